"""The route table: every tRPC procedure the API serves, with its path, kind, input model and
guard (SEED_API §2, TEMPLATE_FLOWS §3.1). The handlers are module-level functions of their
rooms, importable and testable alone; to add a procedure, write it there and list it here."""

from __future__ import annotations

from rpc.procedures import admin, budgets, job_inputs, jobs, progress, template, uploads
from rpc.wire.router import Procedure, Router

PROCEDURES: tuple[Procedure, ...] = (
    # visionPipeline (rpc.procedures.jobs, .job_inputs, .progress, .budgets)
    Procedure("visionPipeline.createJob", "mutation", jobs.create_job,
              job_inputs.CreateJobInput, guard="user"),
    Procedure("visionPipeline.getJobStatus", "query", jobs.get_job_status,
              job_inputs.JobIdInput, guard="user"),
    Procedure("visionPipeline.getWorkerStatus", "query", jobs.get_worker_status, guard="admin"),
    Procedure("visionPipeline.getJobUsage", "query", jobs.get_job_usage,
              job_inputs.JobIdInput, guard="user"),
    Procedure("visionPipeline.getUsage", "query", budgets.get_usage, guard="user"),
    Procedure("visionPipeline.getJobHistory", "query", jobs.get_job_history,
              job_inputs.HistoryInput, input_optional=True, guard="user"),
    Procedure("visionPipeline.onJobProgress", "subscription", progress.on_job_progress,
              progress.JobProgressInput, guard="user"),
    Procedure("visionPipeline.onMyJobs", "subscription", progress.on_my_jobs,
              progress.MyJobsInput, input_optional=True, guard="user"),
    Procedure("visionPipeline.uploadImage", "mutation", uploads.upload_image, guard="user",
              binary=True),
    # The admin dashboard (rpc.procedures.admin)
    Procedure("visionPipeline.admin.overview", "query", admin.overview, guard="admin"),
    Procedure("visionPipeline.admin.retryJobs", "mutation", admin.retry_jobs,
              admin.JobIdsInput, guard="admin"),
    Procedure("visionPipeline.admin.cancelJobs", "mutation", admin.cancel_jobs,
              admin.JobIdsInput, guard="admin"),
    # The template's companions (rpc.procedures.template)
    Procedure("auth.me", "query", template.me),
    Procedure("auth.logout", "mutation", template.logout),
    Procedure("system.health", "query", template.health, template.HealthInput),
    Procedure("system.notifyOwner", "mutation", template.notify_owner,
              template.NotifyOwnerInput, guard="admin"),
)  # fmt: skip


def build_router() -> Router:
    router = Router()
    for procedure in PROCEDURES:
        router.add(procedure)
    return router
