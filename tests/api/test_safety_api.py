"""Who sees which safety flags and alerts: learners none, a teacher their classes' learners', an administrator all."""

from __future__ import annotations

from typing import Any

from quart import Quart
from sqlalchemy import select

from server.safety import Verdict
from server.state import get_state
from server.store.models import AuditEntry
from tests.conftest import register
from tests.test_safety import School, add_lesson, app_safety, make_school, signed_up


async def flagged_school(app: Quart, client: Any) -> tuple[School, dict[str, int]]:
    """Ann is in Tess's class; Bob in Otto's; Cy in no class. Each has a lesson with flags."""
    ann = (await register(client, email="ann@school.test", name="Ann"))["id"]
    school = await make_school(app, ann)
    _, bob = await signed_up(app, "bob@school.test", "Bob")
    _, cy = await signed_up(app, "cy@school.test", "Cy")
    async with get_state(app).db.write() as session:
        from server.store.models import ClassMember

        session.add(ClassMember(class_id=school.other_class_id, learner_id=bob))
    screen = app_safety(app)
    flags = {}
    ann_lesson = await add_lesson(app, ann, "Neura")
    flags["ann_high"] = await screen.record(
        ann_lesson, "user", "I want to kill myself", Verdict("self_harm", "high", "support"), "local"
    )
    flags["ann_medium"] = await screen.record(
        ann_lesson, "assistant", "Where do you live?", Verdict("personal_data", "medium", "replaced"), "local"
    )
    flags["bob_high"] = await screen.record(
        await add_lesson(app, bob, "Countsy"), "user", "you are stupid", Verdict("abuse", "high"), "model"
    )
    flags["cy_low"] = await screen.record(
        await add_lesson(app, cy, "Geo"), "user", "loser", Verdict("bullying", "low"), "moderation"
    )
    return school, {k: v for k, v in flags.items() if v is not None}


async def flag_ids(client: Any, query: str = "") -> list[int]:
    response = await client.get(f"/api/safety/flags{query}")
    body = await response.get_json()
    assert response.status_code == 200, body
    return [flag["id"] for flag in body["flags"]]


async def test_a_teacher_sees_the_flags_of_their_classes_learners_only(app: Quart, client: Any) -> None:
    school, flags = await flagged_school(app, client)

    response = await school.teacher.get("/api/safety/flags")
    assert response.status_code == 200
    body = await response.get_json()
    assert [f["id"] for f in body["flags"]] == [flags["ann_medium"], flags["ann_high"]]  # newest first
    newest, oldest = body["flags"]
    assert oldest == {
        "id": flags["ann_high"],
        "lesson_id": oldest["lesson_id"],
        "learner": {"id": school.learner_id, "name": "Ann"},
        "companion_name": "Neura",
        "role": "user",
        "text": "I want to kill myself",
        "category": "self_harm",
        "severity": "high",
        "source": "local",
        "action": "support",
        "created_at": oldest["created_at"],
    }
    assert oldest["created_at"].endswith("Z")
    assert (newest["role"], newest["action"], newest["text"]) == ("assistant", "replaced", "Where do you live?")

    # Otto teaches Bob's class: he sees Bob's flag and none of Ann's.
    assert await flag_ids(school.other_teacher) == [flags["bob_high"]]


async def test_an_administrator_sees_every_flag_and_can_narrow_them(app: Quart, client: Any) -> None:
    school, flags = await flagged_school(app, client)
    everything = await flag_ids(school.admin)
    assert sorted(everything) == sorted(flags.values())
    assert await flag_ids(school.admin, f"?class_id={school.class_id}") == [flags["ann_medium"], flags["ann_high"]]
    assert await flag_ids(school.admin, "?severity=high") == [flags["bob_high"], flags["ann_high"]]
    assert await flag_ids(school.admin, "?severity=high&limit=1") == [flags["bob_high"]]
    # The page's filter form sends empty values for "any".
    assert sorted(await flag_ids(school.admin, "?class_id=&severity=")) == sorted(flags.values())


async def test_another_teachers_class_is_not_found(app: Quart, client: Any) -> None:
    school, _ = await flagged_school(app, client)
    for query in (f"?class_id={school.other_class_id}", "?class_id=999999"):
        response = await school.teacher.get(f"/api/safety/flags{query}")
        assert response.status_code == 404
        assert (await response.get_json())["error"]["code"] == "class_not_found"
    assert await flag_ids(school.teacher, f"?class_id={school.class_id}") != []


async def test_learners_and_strangers_are_refused(app: Quart, client: Any) -> None:
    await flagged_school(app, client)
    for path in ("/api/safety/flags", "/api/safety/alerts"):
        response = await client.get(path)  # Ann, a learner
        assert response.status_code == 403
        assert (await response.get_json())["error"]["code"] == "forbidden"
        anonymous = await app.test_client().get(path)
        assert anonymous.status_code == 401
    response = await client.post(f"/api/safety/alerts/{1}/read")
    assert response.status_code == 403


async def test_bad_filters_are_a_clear_400(app: Quart, client: Any) -> None:
    school, _ = await flagged_school(app, client)
    for query, field in (("?severity=urgent", "severity"), ("?limit=0", "limit"), ("?class_id=abc", "class_id")):
        response = await school.admin.get(f"/api/safety/flags{query}")
        assert response.status_code == 400, query
        body = await response.get_json()
        assert body["error"]["code"] == "validation_error" and field in body["error"]["fields"], body


async def test_each_read_of_flags_is_audited(app: Quart, client: Any) -> None:
    school, _ = await flagged_school(app, client)
    await flag_ids(school.teacher, f"?class_id={school.class_id}&severity=high")
    async with get_state(app).db.read() as session:
        entries = list((await session.execute(select(AuditEntry).order_by(AuditEntry.id))).scalars())
    assert [(e.actor_email, e.action, e.detail) for e in entries] == [
        ("tess@school.test", "safety_flags.read", f"1 flags (class {school.class_id}, severity high)")
    ]


async def test_alerts_are_each_recipients_own_and_can_be_marked_read(app: Quart, client: Any) -> None:
    school, flags = await flagged_school(app, client)

    teacher = await (await school.teacher.get("/api/safety/alerts")).get_json()
    assert teacher["unread"] == 1
    [alert] = teacher["alerts"]
    assert alert["read_at"] is None and alert["flag"]["id"] == flags["ann_high"]
    assert alert["flag"]["learner"] == {"id": school.learner_id, "name": "Ann"}

    # The administrator was alerted for both high flags; the other teacher only for Bob's.
    admin = await (await school.admin.get("/api/safety/alerts")).get_json()
    assert [a["flag"]["id"] for a in admin["alerts"]] == [flags["bob_high"], flags["ann_high"]]
    other = await (await school.other_teacher.get("/api/safety/alerts")).get_json()
    assert [a["flag"]["id"] for a in other["alerts"]] == [flags["bob_high"]]

    # Someone else's alert is not found, and stays unread.
    response = await school.other_teacher.post(f"/api/safety/alerts/{alert['id']}/read")
    assert response.status_code == 404
    assert (await response.get_json())["error"]["code"] == "alert_not_found"

    for _ in range(2):  # marking twice keeps the first time
        response = await school.teacher.post(f"/api/safety/alerts/{alert['id']}/read")
        assert response.status_code == 204
    after = await (await school.teacher.get("/api/safety/alerts")).get_json()
    assert after["unread"] == 0 and after["alerts"][0]["read_at"] is not None
    assert (await (await school.admin.get("/api/safety/alerts")).get_json())["unread"] == 2
