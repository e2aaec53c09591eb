"""Celery tasks: ids in, one service call, retry policy declared here."""

from __future__ import annotations

from celery import shared_task
from celery.signals import worker_process_shutdown
from django.conf import settings

from brokers import shared as brokers_shared
from dlqadmin.models import AlertDelivery
from dlqadmin.services import alerts, connection_health, maintenance, partitions, search
from dlqadmin.services.heartbeat import heartbeat_beat
from dlqadmin.services.redrive import worker as redrive_worker


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def redrive_job_run(job_id: int) -> None:
    """Process a redrive job for a couple of seconds (chunk after chunk, pause / cancel checked
    before each), then re-enqueue itself (honouring the velocity)."""
    heartbeat_beat(component="worker")
    result = redrive_worker.redrive_job_process(job_id=job_id)
    if result.more:
        redrive_job_run.apply_async(args=[job_id], countdown=result.delay)


@worker_process_shutdown.connect
def _close_broker_connections(**_) -> None:
    """A pool process exiting closes the broker connections its redrives kept open."""
    brokers_shared.close()


@shared_task(ignore_result=True)
def redrive_jobs_watchdog() -> int:
    """Periodic (beat): re-enqueue jobs whose worker died mid-chunk."""
    return redrive_worker.redrive_jobs_watchdog()


@shared_task(ignore_result=True)
def auto_retry_run() -> list[int]:
    """Periodic (beat): apply the automatic retry policy of every source / error group."""
    return maintenance.auto_retry_run()


@shared_task(ignore_result=True)
def retention_purge() -> int:
    """Daily (beat): delete resolved/discarded/archived rows older than DLQADMIN_RETENTION_DAYS."""
    return maintenance.retention_purge(days=settings.DLQADMIN_RETENTION_DAYS)


@shared_task(ignore_result=True)
def partitions_ensure() -> list[str]:
    """Periodic (beat): keep a spare dead-letter partition ahead of the ids (the harvester does
    too, after its stores; this covers stores made when no harvester runs)."""
    return partitions.partitions_ensure()


@shared_task(ignore_result=True)
def search_index() -> int:
    """Index the dead letters stored since the last run (the harvester's indexer thread does the
    same; this covers messages stored by "harvest now" when no harvester runs)."""
    return search.search_index_backlog()


@shared_task(ignore_result=True)
def worker_heartbeat() -> None:
    """Periodic (beat): proves a worker is consuming tasks (dlqadmin_component_up{component="worker"})."""
    heartbeat_beat(component="worker", every=0)


@shared_task(ignore_result=True)
def connections_check_idle() -> int:
    """Periodic (beat): ask the brokers of connections no harvester or worker reported on lately."""
    return connection_health.connections_check_idle()


@shared_task(
    bind=True,
    ignore_result=True,
    autoretry_for=(alerts.DeliveryError,),
    retry_backoff=5,
    retry_backoff_max=300,
    max_retries=5,
)
def alert_deliver(self, delivery_id: int) -> None:
    """Send one alert; retried with exponential backoff; each outcome recorded on the delivery."""
    delivery = AlertDelivery.objects.select_related("rule").filter(pk=delivery_id).first()
    if delivery is not None and delivery.status != "sent":
        alerts.alert_deliver(delivery=delivery)


@shared_task(ignore_result=True)
def alerts_evaluate() -> int:
    """Periodic (beat): backlog and failure-rate alert rules."""
    return alerts.alerts_evaluate()
