"""The storage: artifacts (application archives, command scripts, image archives, logs,
result files), uploaded in resumable pieces, kept once per content, read back in ranges;
and containers' output, shipped by their nodes in segments and kept for the retention."""

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI

from edgecloud_servicekit.app import create_service_app, expose, open_database, wamp_link
from edgecloud_servicekit.background import BackgroundTasks

from .artifacts import router as artifacts_router
from .artifacts.backends import BlobStore, FilesystemStore
from .artifacts.service import Artifacts
from .logs import router as logs_router
from .logs.retention import sweep_forever
from .settings import StorageSettings

logger = logging.getLogger(__name__)


async def blob_store(stack: AsyncExitStack, settings: StorageSettings) -> BlobStore:
    if settings.backend == "s3":
        # Imported here: a filesystem deployment never loads botocore.
        from aiobotocore.session import get_session

        from .artifacts.s3 import S3Store

        secret = settings.s3_secret_key.get_secret_value() if settings.s3_secret_key else None
        client = await stack.enter_async_context(
            get_session().create_client(
                "s3",
                endpoint_url=settings.s3_endpoint_url,
                region_name=settings.s3_region,
                aws_access_key_id=settings.s3_access_key,
                aws_secret_access_key=secret,
            )
        )
        store = S3Store(client, settings.s3_bucket)
        await store.ensure_bucket()
        return store
    return FilesystemStore(settings.artifacts_dir)


def create_app(settings: StorageSettings | None = None) -> FastAPI:
    settings = settings or StorageSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            engine, sessions = open_database(stack, settings)
            artifacts = Artifacts(
                sessions=sessions,
                store=await blob_store(stack, settings),
                max_artifact_bytes=settings.max_artifact_bytes,
                idle_timeout_s=settings.upload_idle_timeout_s,
            )
            wamp = await stack.enter_async_context(wamp_link(settings))
            background = await stack.enter_async_context(BackgroundTasks())
            background.start(
                "expire-uploads",
                lambda: expire_forever(artifacts, timedelta(hours=settings.upload_ttl_h)),
            )
            background.start(
                "sweep-logs",
                lambda: sweep_forever(
                    sessions,
                    retention=timedelta(hours=settings.log_retention_h),
                    every_s=settings.log_sweep_interval_s,
                ),
            )
            expose(
                app,
                engine=engine,
                sessions=sessions,
                wamp=wamp,
                artifacts=artifacts,
                background=background,
            )
            yield

    return create_service_app(
        settings=settings,
        lifespan=lifespan,
        routers=[artifacts_router.router, logs_router.router],
        description="Artifacts: application archives, command scripts, image archives, logs"
        " and result files; resumable uploads, ranged downloads, transfers for nodes;"
        " containers' output shipped by their nodes as it is produced.",
    )


async def expire_forever(artifacts: Artifacts, older_than: timedelta) -> None:
    while True:
        try:
            expired = await artifacts.expire_uploads(older_than=older_than)
            if expired:
                logger.info("discarded %d uploads left incomplete", expired)
            collected = await artifacts.collect_blobs()
            if collected:
                logger.info("removed %d blobs left unreferenced", collected)
        except Exception as err:  # the database may be away; try again next round
            logger.warning("expiring uploads or collecting blobs failed: %s", err)
        await asyncio.sleep(600)
