"""Cloud-side runtime shared by the edgecloud services.

Modules, each wrapping one concern:
    settings       pydantic-settings base every service extends
    logging        handler configuration, done once per process
    db             async engine, session factory, portable column types, upserts
    migrations     running a service's alembic migrations
    wamp           the service's one WAMP session (autobahn is used only here)
    identity       signed caller identity passed from the gateway to services
    problems       problem+json errors and their handlers
    pagination     opaque list cursors
    observability  /healthz and /metrics, request logging and timing
    metrics        the shared Prometheus series, gauges read when /metrics is scraped
    tracing        request ids over HTTP and WAMP, WAMP calls and invocations timed
    internal_http  clients that call other services (aiohttp)
    background     long-running tasks owned by a lifespan
    app            the building blocks of every create_app
    serve          running one service process (migrations, then uvicorn)
"""
