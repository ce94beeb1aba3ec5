"""HTML pages for experiment owners, behind a sign-in form (HttpOnly session cookie)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, HTTPException, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from services.common.auth import KeyRing
from services.common.registry.errors import RegistryError
from services.common.registry.models import ExperimentPublic
from services.common.registry.reader import RegistryReader
from services.common.results import ResultsDocument
from services.scorecard import sessions
from services.scorecard.api.catalog import load_metric
from services.scorecard.api.deps import CatalogDep, DefinitionsDep, RegistryDep, ResultsDep, SettingsDep
from services.scorecard.api.readouts import governed_readout, load_portfolio
from services.scorecard.api.scorecards import SliceCorrection, governed_scorecard
from services.scorecard.catalog_views import kpi_tree
from services.scorecard.pages.render import environment, metric_groups, quality_rows
from services.scorecard.pages.slice_tables import slice_tables
from services.scorecard.pages.tree import flatten, kpi_tree_svg
from services.scorecard.portfolio import FLAG_TITLES
from services.scorecard.readout import slice_summary
from services.scorecard.results_store import ResultsStore
from services.scorecard.scorecard import build_scorecard
from services.scorecard.settings import ScorecardSettings

router = APIRouter(tags=["pages"], include_in_schema=False)
TEMPLATES = environment()
KeyPath = Annotated[str, Path(min_length=1, max_length=64)]
# Any name up to a bound: a malformed one is as missing from the catalog as an unknown one, and a
# browser gets the same HTML 404 for both rather than a JSON validation error.
MetricPath = Annotated[str, Path(min_length=1, max_length=200)]
# Where a 404 page sends the reader to pick what they were after (not_found.html).
EXPERIMENTS = {"href": "/experiments", "title": "Experiments", "field": "key", "kind": "experiment", "listing": "list"}
METRICS = {"href": "/kpi-tree", "title": "KPI tree", "field": "name", "kind": "metric", "listing": "KPI tree"}
MAX_FORM_BYTES = 4096


def _page(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(TEMPLATES.get_template(name).render(**context), status_code=status)


def _signed_in(request: Request, settings: SettingsDep) -> bool:
    token = request.cookies.get(sessions.COOKIE_NAME)
    return token is not None and sessions.verify(token, settings.admin_key_list) is not None


def _safe_next(target: str) -> str:
    """Only local paths: never redirect a signed-in user to another site."""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target and len(target) < 300:
        return target
    return "/experiments"


def _to_login(request: Request) -> RedirectResponse:
    return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)


def _not_found(message: str, place: dict[str, str]) -> HTMLResponse:
    """The 404 page a browser gets: what is missing, in words, and where to pick it from instead."""
    return _page("not_found.html", 404, message=message, place=place, signed_in=True)


async def _results_page(
    request: Request, settings: ScorecardSettings, key: str, registry: RegistryReader, results: ResultsStore,
    render: Callable[[ExperimentPublic, ResultsDocument], Response],
) -> Response:  # fmt: skip
    """A page drawn from an experiment's latest results, or the page to show instead: sign-in for a
    signed-out browser, a 404 for an unknown key, and for an experiment the job has not computed yet
    a 200 page saying so (the page exists; only the job's output is still missing)."""
    if not _signed_in(request, settings):
        return _to_login(request)
    try:
        experiment = await registry.get_experiment(key)
    except RegistryError as exc:
        if exc.status_code != 404:
            raise HTTPException(exc.status_code, exc.message) from exc
        return _not_found(exc.message, EXPERIMENTS)
    document = results.latest(key)
    if document is None:
        return _page("experiment_pending.html", experiment=experiment, signed_in=True)
    return render(experiment, document)


@router.get("/login")
async def login_form(next: str = "/experiments") -> HTMLResponse:
    return _page("login.html", next=_safe_next(next), signed_in=False)


@router.post("/login")
async def login(request: Request, settings: SettingsDep) -> Response:
    body = b""
    async for chunk in request.stream():  # stop at the form's own limit, not the service's
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise HTTPException(413, f"the sign-in form is larger than the {MAX_FORM_BYTES}-byte limit")
    form = parse_qs(body.decode("utf-8", "replace"))
    key, target = form.get("key", [""])[0], _safe_next(form.get("next", ["/experiments"])[0])
    principal = KeyRing(settings.admin_key_list, ()).identify(key) if key else None
    if principal is None:
        return _page("login.html", 401, next=target, signed_in=False, error="That is not an admin key.")
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(sessions.COOKIE_NAME, sessions.issue(key, settings.session_hours * 3600),
                        max_age=int(settings.session_hours * 3600), httponly=True, samesite="strict",
                        secure=settings.cookie_secure, path="/")  # fmt: skip
    return response


@router.post("/logout")
async def logout() -> RedirectResponse:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(sessions.COOKIE_NAME, path="/")
    return response


@router.get("/experiments")
async def experiments_page(
    request: Request, settings: SettingsDep, registry: RegistryDep, results: ResultsDep
) -> Response:
    if not _signed_in(request, settings):
        return _to_login(request)
    rows = []
    for experiment in reversed(await registry.list_experiments()):
        document = results.latest(experiment.key)
        card = build_scorecard(document, experiment) if document is not None else None
        rows.append({"key": experiment.key, "name": experiment.name, "status": experiment.status,
                     "owner": experiment.owner, "verdict": card["decision"]["verdict"] if card else None,
                     "as_of": card["as_of"] if card else None})  # fmt: skip
    return _page("experiments.html", rows=rows, signed_in=True)


@router.get("/experiments/{key}")
async def experiment_page(
    key: KeyPath, request: Request, settings: SettingsDep, registry: RegistryDep, results: ResultsDep,
    catalog: CatalogDep, slice_correction: SliceCorrection = None,
) -> Response:  # fmt: skip
    formats = {metric.name: metric.format for metric in catalog.metrics}

    def render(experiment: ExperimentPublic, document: ResultsDocument) -> Response:
        card = governed_scorecard(document, experiment, catalog, slice_correction)
        return _page("experiment.html", card=card, hypothesis=experiment.hypothesis,
                     groups=metric_groups(card, formats), slices=slice_tables(card),
                     quality=quality_rows(card["data_quality"]), signed_in=True)  # fmt: skip

    return await _results_page(request, settings, key, registry, results, render)


@router.get("/kpi-tree")
async def kpi_tree_page(
    request: Request, settings: SettingsDep, catalog: CatalogDep, registry: RegistryDep
) -> Response:
    if not _signed_in(request, settings):
        return _to_login(request)
    tree = kpi_tree(catalog, await registry.list_experiments())
    trees = [{"root": root, "svg": kpi_tree_svg(root)} for root in tree["trees"]]
    rows = [row for root in tree["trees"] for row in flatten(root)]
    return _page("kpi_tree.html", trees=trees, rows=rows, outside=tree["outside"], signed_in=True)


@router.get("/metrics/{name}")
async def metric_page(
    name: MetricPath, request: Request, settings: SettingsDep, catalog: CatalogDep, registry: RegistryDep,
    definitions: DefinitionsDep,
) -> Response:  # fmt: skip
    if not _signed_in(request, settings):
        return _to_login(request)
    if catalog.get(name) is None:
        return _not_found(f"the metric catalog has no metric '{name}'", METRICS)
    metric = await load_metric(name, catalog, registry, definitions)
    return _page("metric.html", metric=metric, signed_in=True)


@router.get("/experiments/{key}/readout")
async def readout_page(
    key: KeyPath, request: Request, settings: SettingsDep, registry: RegistryDep, results: ResultsDep,
    catalog: CatalogDep,
) -> Response:  # fmt: skip
    def render(experiment: ExperimentPublic, document: ResultsDocument) -> Response:
        readout = governed_readout(document, experiment, catalog)
        return _page("readout.html", readout=readout, slice_summary=slice_summary(readout["trust"]), signed_in=True)

    return await _results_page(request, settings, key, registry, results, render)


@router.get("/portfolio")
async def portfolio_page(
    request: Request, settings: SettingsDep, registry: RegistryDep, results: ResultsDep, catalog: CatalogDep
) -> Response:
    if not _signed_in(request, settings):
        return _to_login(request)
    portfolio = await load_portfolio(registry, results, catalog, None)
    return _page("portfolio.html", portfolio=portfolio, flag_titles=FLAG_TITLES, signed_in=True)
