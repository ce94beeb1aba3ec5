"""Pure registry rules: lifecycle table, layer slices, validation messages, settings, keys."""

from __future__ import annotations

import itertools

import pytest
from assay.bucketing import BUCKETS
from pydantic import ValidationError

from services.assignment.changes import RegistryError, build_created, build_status_change, build_updated, freeze_plan
from services.assignment.layers import LayerFull, allocate_slice, free_ranges
from services.assignment.lifecycle import TRANSITIONS, can_transition
from services.assignment.schemas import ExperimentCreate, ExperimentUpdate, StatusChange
from services.assignment.settings import AssignmentSettings
from services.common.auth import KeyRing

STATUSES = ["draft", "running", "paused", "stopped", "archived"]
ALLOWED = {
    ("draft", "running"), ("draft", "archived"), ("running", "paused"), ("paused", "running"),
    ("running", "stopped"), ("paused", "stopped"), ("stopped", "archived"),
}  # fmt: skip
NOW = "2026-11-20T10:00:00.000Z"


def body(**fields: object) -> ExperimentCreate:
    base: dict[str, object] = {
        "key": "exp", "name": "n",
        "variants": [{"key": "control", "weight": 0.5}, {"key": "treatment", "weight": 0.5}],
    }  # fmt: skip
    return ExperimentCreate.model_validate({**base, **fields})


@pytest.mark.parametrize(("current", "target"), list(itertools.product(STATUSES, STATUSES)))
def test_lifecycle_table(current: str, target: str) -> None:
    assert can_transition(current, target) is ((current, target) in ALLOWED)  # type: ignore[arg-type]
    doc = build_created(body(), {}, NOW).model_copy(update={"status": current})
    if (current, target) in ALLOWED:
        new, changes = build_status_change(doc, StatusChange(status=target), NOW)  # type: ignore[arg-type]
        assert new.status == target and new.version == doc.version + 1
        assert changes["status"] == {"from": current, "to": target}
        assert set(changes) == ({"status", "plan_frozen"} if (current, target) == ("draft", "running") else {"status"})
    else:
        with pytest.raises(RegistryError) as error:
            build_status_change(doc, StatusChange(status=target), NOW)  # type: ignore[arg-type]
        assert error.value.status_code == 409


def test_transition_table_is_exactly_the_design() -> None:
    assert {(a, b) for a, targets in TRANSITIONS.items() for b in targets} == ALLOWED


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"variants": [{"key": "a", "weight": 0.5}, {"key": "b", "weight": 0.4}]},
         "sum to 0.9; they must sum to 1"),
        ({"variants": [{"key": "a", "weight": 1.0}]}, "at least two variants"),
        ({"variants": [{"key": "a", "weight": 0.5}, {"key": "a", "weight": 0.5}]}, "unique; repeated: a"),
        ({"key": "Bad Key!"}, "String should match pattern"),
        ({"traffic": 0}, "greater than 0"),
        ({"traffic": 1.5}, "less than or equal to 1"),
        ({"targeting": [{"attribute": "x", "op": "matches", "value": ".*"}]}, "Input should be 'eq'"),
        ({"variants": [{"key": "a", "weight": -0.5}, {"key": "b", "weight": 1.5}]},
         "greater than or equal to 0"),
    ],
)  # fmt: skip
def test_validation_messages_say_what_to_fix(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        body(**fields)


def test_weights_summing_to_one_within_rounding_are_accepted() -> None:
    thirds = [{"key": k, "weight": 1 / 3} for k in ("a", "b", "c")]
    assert len(body(variants=thirds).variants) == 3


def running_doc():  # type: ignore[no-untyped-def]
    return build_created(body(), {}, NOW).model_copy(update={"status": "running"})


@pytest.mark.parametrize(
    "change",
    [{"variants": [{"key": "control", "weight": 0.4}, {"key": "treatment", "weight": 0.6}]},
     {"salt": "new-salt"}, {"layer": "checkout"}],
)  # fmt: skip
def test_changes_that_would_reshuffle_are_refused_while_running(change: dict[str, object]) -> None:
    with pytest.raises(RegistryError) as error:
        build_updated(running_doc(), ExperimentUpdate.model_validate(change), {}, NOW)
    assert error.value.status_code == 409 and "move enrolled units" in error.value.message


def test_traffic_and_targeting_may_change_while_running() -> None:
    update = ExperimentUpdate.model_validate(
        {"traffic": 0.5, "targeting": [{"attribute": "c", "op": "eq", "value": "US"}]}
    )
    new, changes = build_updated(running_doc(), update, {}, NOW)
    assert new.traffic == 0.5 and set(changes) == {"traffic", "targeting"}
    assert changes["traffic"] == {"from": 1.0, "to": 0.5}


def test_dimensions_may_change_while_running() -> None:
    doc = running_doc().model_copy(update={"dimensions": ["country"]})
    new, changes = build_updated(doc, ExperimentUpdate(dimensions=["country", "platform"]), {}, NOW)
    assert new.dimensions == ["country", "platform"] and new.version == doc.version + 1 and new.plan_changes == []
    assert changes == {"dimensions": {"from": ["country"], "to": ["country", "platform"]}}
    same, unchanged = build_updated(new, ExperimentUpdate(dimensions=["country", "platform"]), {}, NOW)
    assert same is new and unchanged == {}
    with pytest.raises(RegistryError, match="'dimensions' cannot be null"):
        build_updated(doc, ExperimentUpdate.model_validate({"dimensions": None}), {}, NOW)


@pytest.mark.parametrize(
    ("dimensions", "message"),
    [(["a", "b", "c", "d", "e", "f"], "at most 5 items"), (["country", "country"], "dimensions must be distinct"),
     (["bad name"], "String should match pattern"), ([""], "String should match pattern"), ("country", "list")],
)  # fmt: skip
def test_bad_dimensions_are_refused_on_create_and_update(dimensions: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        body(dimensions=dimensions)
    with pytest.raises(ValidationError, match=message):
        ExperimentUpdate.model_validate({"dimensions": dimensions})
    assert body(dimensions=["country", "os.version", "_tier", "b", "c"]).dimensions[-1] == "c"


def test_version_mismatch_and_noop_patch() -> None:
    doc = running_doc()
    with pytest.raises(RegistryError, match="version mismatch: you sent 7"):
        build_updated(doc, ExperimentUpdate(version=7, name="x"), {}, NOW)
    same, changes = build_updated(doc, ExperimentUpdate(name=doc.name), {}, NOW)
    assert same is doc and changes == {}


def test_null_for_required_field_is_refused() -> None:
    with pytest.raises(RegistryError, match="'name' cannot be null"):
        build_updated(running_doc(), ExperimentUpdate.model_validate({"name": None}), {}, NOW)


def test_layer_slices_are_disjoint_and_released_on_stop() -> None:
    docs = {}
    for key, share in (("a", 0.3), ("b", 0.5)):
        doc = build_created(body(key=key, layer="checkout", layer_share=share), docs, NOW)
        docs[key] = doc
    assert docs["a"].layer_range == (0, 3000) and docs["b"].layer_range == (3000, 8000)
    with pytest.raises(RegistryError, match=r"no free range of 0\.3"):
        build_created(body(key="c", layer="checkout", layer_share=0.3), docs, NOW)
    rest = build_created(body(key="c", layer="checkout"), docs, NOW)
    assert rest.layer_range == (8000, BUCKETS)
    stopped, _ = build_status_change(
        docs["a"].model_copy(update={"status": "running"}), StatusChange(status="stopped"), NOW
    )
    assert stopped.layer_range is None


def test_free_ranges_and_full_layer() -> None:
    assert free_ranges([(0, 10), (20, 30)]) == [(10, 20), (30, BUCKETS)]
    with pytest.raises(LayerFull):
        allocate_slice("l", [(0, BUCKETS)], None)


def test_non_dev_environment_refuses_to_start_without_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ASSAY_ADMIN_KEYS", "ASSAY_SDK_KEYS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ASSAY_ENV", "production")
    with pytest.raises(ValidationError, match="ASSAY_ADMIN_KEYS and ASSAY_SDK_KEYS must be set"):
        AssignmentSettings()
    monkeypatch.setenv("ASSAY_ADMIN_KEYS", "short")
    monkeypatch.setenv("ASSAY_SDK_KEYS", "also-short")
    with pytest.raises(ValidationError, match="at least 16 characters"):
        AssignmentSettings()
    monkeypatch.setenv("ASSAY_ENV", "dev")
    monkeypatch.delenv("ASSAY_ADMIN_KEYS")
    monkeypatch.delenv("ASSAY_SDK_KEYS")
    settings = AssignmentSettings()
    assert settings.admin_key_list == ("dev-admin-key",) and settings.sdk_key_list == ("dev-sdk-key",)


def test_keyring_identifies_roles_and_hides_keys() -> None:
    ring = KeyRing(["admin-secret-0000000001"], ["sdk-secret-00000000001"])
    admin, sdk = ring.identify("admin-secret-0000000001"), ring.identify("sdk-secret-00000000001")
    assert admin is not None and admin.role == "admin" and "secret" not in admin.key_id
    assert sdk is not None and sdk.role == "sdk"
    assert ring.identify("admin-secret-000000000") is None
    assert ring.identify("") is None


def test_the_frozen_plan_hash_covers_what_the_plan_commits_to() -> None:
    base = build_created(body(metrics={"primary": ["conversion"]}), {}, NOW)
    same = freeze_plan(base, "2026-11-21T00:00:00.000Z")
    assert same.hash == freeze_plan(base, NOW).hash  # when it was frozen is not part of the plan
    for update in ({"metrics": {"primary": ["revenue"]}}, {"analysis": {"alpha": 0.1}},
                   {"plan": {"planned_units_per_variant": 1000}}, {"analysis": {"sequential": True}}):  # fmt: skip
        other = build_created(body(**{"metrics": {"primary": ["conversion"]}, **update}), {}, NOW)
        assert freeze_plan(other, NOW).hash != same.hash, update
