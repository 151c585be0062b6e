-- wrk script of the API benchmark: tRPC GET queries with a Bearer session token.
--   wrk -t2 -c64 -d10s --latency -s bench/wrk/trpc.lua URL -- TOKENS_FILE status|history USERS PER_USER
-- TOKENS_FILE: one "<userId> <token>" per line. status: getJobStatus of a random job of the
-- client's user (job j belongs to user (j - 1) % USERS + 1, so its jobs are
-- userId + k * USERS); history: getJobHistory, the design document's default page (20).
-- Inputs are superjson ({"json": …}), as @trpc/client with superjson sends them.

local clients = {}
local procedure, users, per_user

local function urlencode(s)
  return (s:gsub("[^%w%-_%.~]", function(c) return string.format("%%%02X", string.byte(c)) end))
end

function init(args)
  for line in io.lines(args[1]) do
    local uid, tok = line:match("^(%d+) (%S+)$")
    if uid then clients[#clients + 1] = { tonumber(uid), "Bearer " .. tok } end
  end
  procedure, users, per_user = args[2], tonumber(args[3]), tonumber(args[4])
  math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16) % 1000003)
end

function request()
  local c = clients[math.random(#clients)]
  local path
  if procedure == "status" then
    local job = c[1] + users * math.random(0, per_user - 1)
    path = "/api/trpc/visionPipeline.getJobStatus?input="
      .. urlencode('{"json":{"jobId":' .. job .. '}}')
  else
    path = "/api/trpc/visionPipeline.getJobHistory?input="
      .. urlencode('{"json":{"limit":20,"offset":0}}')
  end
  return wrk.format("GET", path, { ["Authorization"] = c[2] })
end
