"""Classes as teachers and learners use them: codes, the roster, reading lessons (audited), companions first."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import update

from server.state import get_state
from server.store.models import SchoolClass
from tests.conftest import create_companion, register, sign_in_as


async def _teacher_with_class(app, client, name="Year 7 Science", email="teach@school.test"):
    await sign_in_as(app, client, email, "teacher", "Ms Rivera")
    response = await client.post("/api/classes", json={"name": name})
    assert response.status_code == 201, await response.get_data(as_text=True)
    return await response.get_json()


async def _lesson(app, learner_client, companion_id, said=("user", "What is a cell?")):
    from server import lessons

    response = await learner_client.post(f"/api/companions/{companion_id}/lessons")
    assert response.status_code == 201, await response.get_data(as_text=True)
    lesson = await response.get_json()
    db = get_state(app).db
    await lessons.append_transcript(db, lesson["id"], said[0], said[1])
    await lessons.end_lesson(db, lesson["id"], "customer-ended-call")
    return lesson


async def test_a_learner_joins_with_the_code_and_the_teacher_sees_them(app, client, new_client):
    school_class = await _teacher_with_class(app, client)
    code = school_class["join_code"]
    assert len(code) == 6 and school_class["learners_count"] == 0
    assert school_class["teacher"]["name"] == "Ms Rivera"

    learner = new_client()
    ann = await register(learner, "ann@school.test", "Ann")
    # Typed in lower case with a space: still the class's code.
    joined = await learner.post("/api/classes/join", json={"code": f"{code[:3].lower()} {code[3:]}"})
    assert joined.status_code == 200, await joined.get_data(as_text=True)
    assert (await joined.get_json())["class"] == {
        "id": school_class["id"],
        "name": "Year 7 Science",
        "teacher_name": "Ms Rivera",
    }
    assert (await (await learner.get("/api/me")).get_json())["in_class"] is True

    again = await learner.post("/api/classes/join", json={"code": code})
    assert again.status_code == 409 and (await again.get_json())["error"]["code"] == "already_in_class"

    detail = await (await client.get(f"/api/classes/{school_class['id']}")).get_json()
    assert [row["id"] for row in detail["learners"]] == [ann["id"]]
    row = detail["learners"][0]
    assert row["lessons_count"] == 0 and row["last_active_at"] is None
    assert row["usage"]["lessons"] == {"used": 0, "limit": 10}


async def test_unknown_and_expired_codes_are_refused_in_words(app, client, new_client):
    school_class = await _teacher_with_class(app, client)
    learner = new_client()
    await register(learner, "ann@school.test", "Ann")
    unknown = await learner.post("/api/classes/join", json={"code": "ZZZZZZ"})
    assert unknown.status_code == 404
    assert (await unknown.get_json())["error"]["code"] == "join_code_unknown"

    async with get_state(app).db.write() as session:
        await session.execute(
            update(SchoolClass)
            .where(SchoolClass.id == school_class["id"])
            .values(join_code_expires_at=datetime.now(UTC) - timedelta(minutes=1))
        )
    expired = await learner.post("/api/classes/join", json={"code": school_class["join_code"]})
    assert expired.status_code == 410
    assert "new one" in (await expired.get_json())["error"]["message"]

    # A new code works again, and the old one no longer does.
    renewed = await (await client.post(f"/api/classes/{school_class['id']}/join-code")).get_json()
    assert renewed["join_code"] != school_class["join_code"]
    ok = await learner.post("/api/classes/join", json={"code": renewed["join_code"]})
    assert ok.status_code == 200
    empty = await learner.post("/api/classes/join", json={"code": "   "})
    assert empty.status_code in (400, 404)


async def test_a_teacher_adds_a_learner_by_email_once(app, client, new_client):
    school_class = await _teacher_with_class(app, client)
    await register(new_client(), "bob@school.test", "Bob")
    path = f"/api/classes/{school_class['id']}/learners"
    added = await client.post(path, json={"email": "Bob@School.test"})
    assert added.status_code == 201 and (await added.get_json())["name"] == "Bob"
    twice = await client.post(path, json={"email": "bob@school.test"})
    assert twice.status_code == 409 and (await twice.get_json())["error"]["code"] == "already_in_class"
    nobody = await client.post(path, json={"email": "nobody@school.test"})
    assert nobody.status_code == 404 and (await nobody.get_json())["error"]["code"] == "learner_not_found"
    not_json = await client.post(path, json={"mail": "x"})
    assert not_json.status_code == 400
    detail = await (await client.get(f"/api/classes/{school_class['id']}")).get_json()
    assert [r["name"] for r in detail["learners"]] == ["Bob"]


async def test_the_roster_counts_lessons_and_the_transcript_read_is_audited(app, client, new_client):
    school_class = await _teacher_with_class(app, client)
    learner = new_client()
    ann = await register(learner, "ann@school.test", "Ann")
    await learner.post("/api/classes/join", json={"code": school_class["join_code"]})
    companion = await create_companion(learner, name="Cella")
    lesson = await _lesson(app, learner, companion["id"])

    detail = await (await client.get(f"/api/classes/{school_class['id']}")).get_json()
    row = detail["learners"][0]
    assert row["lessons_count"] == 1
    assert row["companions_used"] == ["Cella"]
    assert row["last_active_at"] is not None
    assert row["usage"] == {"companions": {"used": 1, "limit": 3}, "lessons": {"used": 1, "limit": 10}}

    listed = await client.get(f"/api/classes/{school_class['id']}/learners/{ann['id']}/lessons")
    assert [x["id"] for x in (await listed.get_json())["lessons"]] == [lesson["id"]]

    read = await client.get(f"/api/classes/{school_class['id']}/lessons/{lesson['id']}")
    assert read.status_code == 200
    assert [t["text"] for t in (await read.get_json())["transcript"]] == ["What is a cell?"]

    from server import audit

    page = await audit.newest(get_state(app).db, limit=10)
    entry = page.entries[0]
    assert (entry.action, entry.actor_email, entry.learner_id, entry.lesson_id) == (
        "transcript.read",
        "teach@school.test",
        ann["id"],
        lesson["id"],
    )


async def test_another_teacher_sees_nothing_of_the_class(app, client, new_client):
    school_class = await _teacher_with_class(app, client)
    learner = new_client()
    ann = await register(learner, "ann@school.test", "Ann")
    await learner.post("/api/classes/join", json={"code": school_class["join_code"]})
    companion = await create_companion(learner)
    lesson = await _lesson(app, learner, companion["id"])

    other = new_client()
    await sign_in_as(app, other, "other@school.test", "teacher")
    assert (await (await other.get("/api/classes")).get_json())["classes"] == []
    cid = school_class["id"]
    for method, path in [
        ("GET", f"/api/classes/{cid}"),
        ("GET", f"/api/classes/{cid}/learners/{ann['id']}/lessons"),
        ("GET", f"/api/classes/{cid}/lessons/{lesson['id']}"),
        ("PATCH", f"/api/classes/{cid}"),
        ("DELETE", f"/api/classes/{cid}?confirm=true"),
    ]:
        response = await other.open(path, method=method, json={"name": "Mine now"} if method == "PATCH" else None)
        assert response.status_code == 404, (method, path)
        assert (await response.get_json())["error"]["code"] == "class_not_found"
    # Their own class cannot reach a learner who is not in it.
    own = await (await other.post("/api/classes", json={"name": "Other"})).get_json()
    foreign = await other.get(f"/api/classes/{own['id']}/lessons/{lesson['id']}")
    assert foreign.status_code == 404
    # And the learner is still in the first class, untouched.
    detail = await (await client.get(f"/api/classes/{cid}")).get_json()
    assert detail["name"] == "Year 7 Science" and len(detail["learners"]) == 1


async def test_deleting_a_class_with_learners_asks_first_and_keeps_their_lessons(app, client, new_client):
    school_class = await _teacher_with_class(app, client)
    learner = new_client()
    await register(learner, "ann@school.test", "Ann")
    await learner.post("/api/classes/join", json={"code": school_class["join_code"]})
    companion = await create_companion(learner)
    lesson = await _lesson(app, learner, companion["id"])

    refused = await client.delete(f"/api/classes/{school_class['id']}")
    assert refused.status_code == 409
    body = (await refused.get_json())["error"]
    assert body["code"] == "class_has_learners" and "stay" in body["message"]
    assert (await client.get(f"/api/classes/{school_class['id']}")).status_code == 200

    deleted = await client.delete(f"/api/classes/{school_class['id']}?confirm=true")
    assert deleted.status_code == 200
    assert (await deleted.get_json())["learners_released"] == 1
    assert (await client.get(f"/api/classes/{school_class['id']}")).status_code == 404
    mine = await (await learner.get("/api/me/lessons")).get_json()
    assert [x["id"] for x in mine["items"]] == [lesson["id"]]
    assert (await (await learner.get("/api/me")).get_json())["in_class"] is False


async def test_a_class_companion_shows_for_its_learners(app, client, new_client):
    school_class = await _teacher_with_class(app, client)
    companion = await create_companion(client, name="Professor Photosynthesis")
    cid = school_class["id"]
    assert (await client.put(f"/api/classes/{cid}/companions/{companion['id']}")).status_code == 204
    assert (await client.put(f"/api/classes/{cid}/companions/{companion['id']}")).status_code == 204  # idempotent
    assert (await client.put(f"/api/classes/{cid}/companions/999999")).status_code == 404
    learner = new_client()
    await register(learner, "ann@school.test", "Ann")
    assert (await (await learner.get("/api/me/classes")).get_json())["classes"] == []
    await learner.post("/api/classes/join", json={"code": school_class["join_code"]})
    mine = (await (await learner.get("/api/me/classes")).get_json())["classes"]
    assert [(c["name"], [x["name"] for x in c["companions"]]) for c in mine] == [
        ("Year 7 Science", ["Professor Photosynthesis"])
    ]
    detail = await (await client.get(f"/api/classes/{cid}")).get_json()
    assert [c["name"] for c in detail["companions"]] == ["Professor Photosynthesis"]
    assert (await client.delete(f"/api/classes/{cid}/companions/{companion['id']}")).status_code == 204
    mine = (await (await learner.get("/api/me/classes")).get_json())["classes"]
    assert mine[0]["companions"] == []
    # A learner leaves; the class and their lessons stay.
    assert (await learner.delete(f"/api/me/classes/{cid}")).status_code == 204
    assert (await (await learner.get("/api/me/classes")).get_json())["classes"] == []


async def test_an_admin_sees_every_class_and_a_learner_none(app, client, new_client):
    school_class = await _teacher_with_class(app, client)
    admin = new_client()
    await sign_in_as(app, admin, "head@school.test", "admin")
    listed = (await (await admin.get("/api/classes")).get_json())["classes"]
    assert [c["id"] for c in listed] == [school_class["id"]]
    assert (await admin.get(f"/api/classes/{school_class['id']}")).status_code == 200
    learner = new_client()
    await register(learner, "ann@school.test", "Ann")
    refused = await learner.get("/api/classes")
    assert refused.status_code == 403 and (await refused.get_json())["error"]["code"] == "forbidden"
    assert (await learner.post("/api/classes", json={"name": "Mine"})).status_code == 403
