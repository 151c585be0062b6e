"""The procedures the API serves (the route table in ``rpc.procedures.routes``) and their
helpers: jobs, live progress, the template's companions, quotas, owner notifications, images."""
