"""The operations console: server-rendered pages over the admin API (dead letters) and the
audit API (a transaction's story), for signed-in operators.

Roles (bridge.access) decide the pages: `support` and `engineering` see everything; an
`analyst` sees the health page only. The APIs are called with the operator's own token, so
they keep enforcing roles and masking numbers whatever the console shows.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, select_autoescape
from redis.exceptions import RedisError
from starlette.datastructures import FormData

from bridge import problems
from bridge.config import Settings
from bridge.edge import Readiness, add_probes, problem_response
from bridge.logs import get_logger

from . import filters as list_filters
from .backend import TIMEOUT_SECONDS, BackendError, reference_path
from .health import duration
from .jobs import ACTIONS, parse_ids
from .runtime import Console, attempt
from .sessions import COOKIE, Session, csrf_ok

log = get_logger("console")

_SECURITY_HEADERS = {
    # Pages, styles and the one script come from the console itself; nothing may frame it.
    "Content-Security-Policy": "default-src 'self'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # URLs hold transaction references
    "Cache-Control": "no-store",
}


class SignInNeeded(Exception):
    pass


class NotAllowed(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def ago(iso: str | None) -> str:
    """`5m ago` for an ISO-8601 time (the list's age column)."""
    if not iso:
        return "—"
    try:
        then = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    seconds = max(0, int((datetime.now(UTC) - then).total_seconds()))
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def create_app(settings: Settings) -> FastAPI:
    state: dict[str, Console] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with httpx.AsyncClient(timeout=TIMEOUT_SECONDS) as http:
            state["console"] = Console(settings, http)
            try:
                yield
            finally:
                await state["console"].jobs.wait_idle()
                await state["console"].redis.aclose()

    app = FastAPI(title="siteti-bridge console", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.mount("/static", StaticFiles(packages=[("console", "static")]), name="static")
    templates = Environment(
        loader=PackageLoader("console", "templates"), autoescape=select_autoescape()
    )
    # Payloads as people read them: "•••4567", not "\u2022\u2022\u20224567".
    templates.policies["json.dumps_kwargs"] = {"sort_keys": True, "ensure_ascii": False}
    templates.filters["ago"] = ago
    templates.filters["duration"] = duration
    templates.globals["status_choices"] = list_filters.STATUS_CHOICES
    templates.globals["age_choices"] = list_filters.AGE_LABELS

    def console() -> Console:
        return state["console"]

    @app.middleware("http")
    async def security_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        for name, value in _SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    async def page(
        request: Request,
        name: str,
        session: Session | None,
        status_code: int = 200,
        **context: Any,
    ) -> HTMLResponse:
        flash = await console().sessions.take_flash(session) if session else None
        html = templates.get_template(name).render(
            request=request, session=session, flash=flash, **context
        )
        return HTMLResponse(html, status_code=status_code)

    async def signed_in(request: Request, investigator: bool = True) -> Session:
        session = await console().sessions.load(request.cookies.get(COOKIE))
        # The token is checked again: one removed from API_TOKENS ends its sessions.
        if session is None or console().tokens.role_of(f"Bearer {session.token}") is None:
            raise SignInNeeded
        if investigator and not session.investigator:
            raise NotAllowed(
                f"The {session.role} role sees aggregates only: the health page. Dead letters"
                " and transaction stories need support or engineering."
            )
        return session

    async def posted(request: Request, session: Session) -> FormData:
        form = await request.form()
        csrf = form.get("csrf")
        if not csrf_ok(session, csrf if isinstance(csrf, str) else None):
            raise NotAllowed("This form has expired or did not come from the console: reload.")
        return form

    def text(form: FormData, name: str) -> str:
        value = form.get(name)
        return value.strip() if isinstance(value, str) else ""

    @app.exception_handler(SignInNeeded)
    async def sign_in_needed(request: Request, _: SignInNeeded) -> Response:
        if request.method == "GET" and not request.url.path.endswith(".json"):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse("/signin?" + urlencode({"next": target}), status_code=303)
        return JSONResponse({"error": "sign in again"}, status_code=401)

    @app.exception_handler(NotAllowed)
    async def not_allowed(request: Request, exc: NotAllowed) -> Response:
        session = await console().sessions.load(request.cookies.get(COOKIE))
        return await page(
            request, "message.html", session, 403, title="Not allowed", text=exc.message
        )

    @app.exception_handler(RedisError)
    async def redis_down(request: Request, exc: RedisError) -> Response:
        log.error("console_redis_unavailable", error=repr(exc))
        html = templates.get_template("message.html").render(
            request=request,
            session=None,
            title="Sessions unavailable",
            text="The console cannot reach Redis, where sign-ins are kept. Try again shortly.",
        )
        return HTMLResponse(html, status_code=503)

    # --- sign-in ------------------------------------------------------------------------

    def safe_next(target: str | None) -> str:
        # Only a path of this console: never an open redirect ("//host", "/\\host" are hosts
        # to browsers).
        target = target or "/"
        local = target.startswith("/") and not target.startswith("//") and "\\" not in target
        return target if local else "/"

    @app.get("/", response_model=None)
    async def home(request: Request) -> Response:
        session = await console().sessions.load(request.cookies.get(COOKIE))
        if session is None:
            return RedirectResponse("/signin", status_code=303)
        return RedirectResponse("/dlq" if session.investigator else "/health", status_code=303)

    @app.get("/signin")
    async def signin_form(request: Request, next: str = "/") -> HTMLResponse:
        return await page(request, "signin.html", None, next=safe_next(next))

    @app.post("/signin", response_model=None)
    async def signin(request: Request) -> Response:
        form = await request.form()
        token, target = text(form, "token"), safe_next(text(form, "next"))
        if not console().tokens.configured:
            message = "The console is disabled: no API_TOKENS are configured."
            return await page(request, "signin.html", None, 503, error=message, next=target)
        role = console().tokens.role_of(f"Bearer {token}") if token else None
        if role is None:
            client = request.client.host if request.client else None
            log.warning("console_signin_refused", category="security", client_ip=client)
            error = "That token is not known. Paste the API token you were given."
            return await page(request, "signin.html", None, 401, error=error, next=target)
        cookie = await console().sessions.create(role, token)
        log.info("console_signin", role=role)
        if target == "/":
            target = "/dlq" if role in ("support", "engineering") else "/health"
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            COOKIE,
            cookie.value,
            max_age=console().sessions.ttl_seconds,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return response

    @app.post("/signout", response_model=None)
    async def signout(request: Request) -> Response:
        session = await signed_in(request, investigator=False)
        await posted(request, session)
        await console().sessions.delete(session)
        response = RedirectResponse("/signin", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    # --- dead letters -------------------------------------------------------------------

    @app.get("/dlq")
    async def dead_letters(request: Request) -> HTMLResponse:
        session = await signed_in(request)
        problems: list[str] = []
        entries: list[dict[str, Any]] = []
        reasons: list[str] = []
        try:
            chosen = list_filters.ListFilters.from_form(request.query_params)
        except ValueError as exc:
            chosen, problems = list_filters.ListFilters(), [str(exc)]
        status_code = 200
        try:
            listing, stats = await asyncio.gather(
                console().admin.call("GET", "/dlq", session.token, params=chosen.query()),
                console().admin.call("GET", "/dlq/stats", session.token),
            )
            entries, reasons = listing["entries"], sorted(stats["by_reason"])
        except BackendError as exc:
            problems.append(exc.message)
            status_code = 502 if exc.unreachable else 200
        return await page(
            request,
            "dlq_list.html",
            session,
            status_code,
            entries=entries,
            filters=chosen,
            reasons=reasons,
            problems=problems,
            actions=ACTIONS,
        )

    @app.post("/dlq/bulk", response_model=None)
    async def bulk(request: Request) -> Response:
        session = await signed_in(request)
        form = await posted(request, session)
        action, note = text(form, "action"), text(form, "note")
        try:
            if action not in ACTIONS:
                raise ValueError("choose retry, resolve or close")
            if action != "retry" and not note:
                raise ValueError(f"say why in the note: {action} records it")
            ids = parse_ids([v for v in form.getlist("id") if isinstance(v, str)])
        except ValueError as exc:
            await console().sessions.flash(session, f"Nothing started: {exc}.")
            return RedirectResponse(safe_next(text(form, "back") or "/dlq"), status_code=303)
        token = session.token

        async def act(entry_id: int) -> None:
            await console().admin.call(
                "POST",
                f"/dlq/{entry_id}/{action}",
                token,
                json=None if action == "retry" else {"note": note},
            )

        job_id = await console().jobs.start(action, ids, act)
        return RedirectResponse(f"/jobs/{job_id}", status_code=303)

    @app.get("/dlq/{entry_id}")
    async def entry(request: Request, entry_id: str) -> HTMLResponse:
        session = await signed_in(request)
        if not (entry_id.isascii() and entry_id.isdigit()):
            return await page(
                request, "entry.html", session, 404, entry=None, problems=["No such entry."]
            )
        try:
            found = await console().admin.call("GET", f"/dlq/{entry_id}", session.token)
        except BackendError as exc:
            code = 502 if exc.unreachable else exc.status
            return await page(
                request, "entry.html", session, code, entry=None, problems=[exc.message]
            )
        return await page(request, "entry.html", session, entry=found, problems=[])

    @app.post("/dlq/{entry_id}/{action}", response_model=None)
    async def entry_action(request: Request, entry_id: str, action: str) -> Response:
        session = await signed_in(request)
        form = await posted(request, session)
        if action not in ACTIONS or not (entry_id.isascii() and entry_id.isdigit()):
            raise NotAllowed("No such action.")
        body = None if action == "retry" else {"note": text(form, "note")}
        try:
            answer = await console().admin.call(
                "POST", f"/dlq/{entry_id}/{action}", session.token, json=body
            )
            message = answer.get("message") or f"Entry {entry_id}: {action} done."
            log.info("console_entry_action", action=action, id=entry_id, role=session.role)
        except BackendError as exc:
            message = f"{action.capitalize()} refused: {exc.message}"
        await console().sessions.flash(session, message)
        return RedirectResponse(f"/dlq/{entry_id}", status_code=303)

    # --- a transaction's story ----------------------------------------------------------

    @app.get("/story")
    async def story(request: Request, reference: str = "") -> HTMLResponse:
        session = await signed_in(request)
        reference = reference.strip()
        if not reference:
            return await page(request, "story.html", session, reference="", problems=[])
        started = time.perf_counter()
        trail, letters = await asyncio.gather(
            attempt(console().receipts.call("GET", reference_path(reference), session.token)),
            attempt(
                console().admin.call(
                    "GET", "/dlq", session.token, params={"reference": reference, "limit": "50"}
                )
            ),
        )
        # A 404 is an answer here (nothing known on that side), not a problem to show.
        problems = [
            a.message for a in (trail, letters) if isinstance(a, BackendError) and a.status != 404
        ]
        return await page(
            request,
            "story.html",
            session,
            reference=reference,
            trail=trail if isinstance(trail, dict) else None,
            letters=letters["entries"] if isinstance(letters, dict) else [],
            problems=problems,
            elapsed_ms=round((time.perf_counter() - started) * 1000),
        )

    # --- jobs ---------------------------------------------------------------------------

    @app.get("/jobs/{job_id}.json")
    async def job_json(request: Request, job_id: str) -> Response:
        await signed_in(request)
        job = await console().jobs.get(job_id)
        if job is None:
            return problem_response(problems.NOT_FOUND, 404, "no such job (or finished a day ago)")
        return JSONResponse(job.as_json())

    @app.get("/jobs/{job_id}")
    async def job_page(request: Request, job_id: str) -> HTMLResponse:
        session = await signed_in(request)
        job = await console().jobs.get(job_id)
        if job is None:
            return await page(
                request,
                "message.html",
                session,
                404,
                title="No such job",
                text="That job is unknown or finished over a day ago.",
            )
        stalled = not job.finished and time.time() - job.updated_at > 60
        return await page(request, "job.html", session, job=job, stalled=stalled)

    # --- health -------------------------------------------------------------------------

    @app.get("/health")
    async def health(request: Request) -> HTMLResponse:
        session = await signed_in(request, investigator=False)
        figures, dlq_stats, audit_stats = await asyncio.gather(
            console().health(),
            attempt(console().admin.call("GET", "/dlq/stats", session.token)),
            attempt(
                console().receipts.call("GET", "/audit/stats", session.token, params={"hours": "1"})
            ),
        )
        problems = [a.message for a in (dlq_stats, audit_stats) if isinstance(a, BackendError)]
        return await page(
            request,
            "health.html",
            session,
            health=figures,
            dlq_stats=dlq_stats if isinstance(dlq_stats, dict) else None,
            audit_stats=audit_stats if isinstance(audit_stats, dict) else None,
            problems=problems + figures.problems,
        )

    async def ready() -> Readiness:
        try:
            await console().redis.ping()
        except (RedisError, OSError) as exc:
            return Readiness(False, {"status": "unavailable", "failed": {"redis": repr(exc)}})
        return Readiness(True, {"status": "ready"})

    add_probes(app, ready)
    return app
