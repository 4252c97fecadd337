"""The administrator's routes: accounts, the school's settings, retention, usage, status and the audit log."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from server import accounts, lessons
from server.app import create_app
from server.state import get_state
from server.store.models import Lesson, TranscriptEntry
from tests.conftest import PASSWORD, create_companion, make_settings, register

ROOT = "root@school.test"


async def sign_in(client: Client, email: str, password: str = PASSWORD) -> Any:
    return await client.post("/api/auth/login", json={"email": email, "password": password})


async def make_admin(app: Quart, client: Client, email: str = ROOT, name: str = "Root") -> dict[str, Any]:
    """An administrator made as the command line makes one, then signed in through the real route."""
    await accounts.register(get_state(app).db, email, PASSWORD, name, role="admin")
    response = await sign_in(client, email)
    assert response.status_code == 200, await response.get_data(as_text=True)
    body: dict[str, Any] = await response.get_json()
    return body


async def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, await response.get_data(as_text=True)
    return await response.get_json()


async def error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, await response.get_data(as_text=True)
    body: dict[str, Any] = (await response.get_json())["error"]
    assert body["message"]
    return body


async def users(client: Client, **query: Any) -> dict[str, Any]:
    body: dict[str, Any] = await ok(await client.get("/api/admin/users", query_string=query))
    return body


async def row_of(client: Client, email: str) -> dict[str, Any]:
    found = [u for u in (await users(client, q=email))["users"] if u["email"] == email]
    assert len(found) == 1, found
    return found[0]


async def patch(client: Client, user_id: int, **changes: Any) -> Any:
    return await client.patch(f"/api/admin/users/{user_id}", json=changes)


async def add_lesson(
    app: Quart, learner_id: int, *, days_ago: float = 0, seconds: int = 300, lines: tuple[str, ...] = ()
) -> int:
    """A finished lesson written straight to the database, started `days_ago`, with a transcript of `lines`."""
    started = datetime.now(UTC) - timedelta(days=days_ago)
    async with get_state(app).db.write() as session:
        lesson = Lesson(
            learner_id=learner_id,
            companion_name="Neura",
            companion_subject="science",
            companion_topic="Neural networks",
            started_at=started,
            ended_at=started + timedelta(seconds=seconds),
            length_seconds=seconds,
            end_reason="customer-ended-call",
        )
        session.add(lesson)
        await session.flush()
        for position, text in enumerate(lines):
            session.add(TranscriptEntry(lesson_id=lesson.id, position=position, role="user", text=text, at=started))
        return lesson.id


async def transcript_lines(app: Quart, lesson_id: int) -> list[str]:
    async with get_state(app).db.read() as session:
        from server.store import lessons as lesson_store

        return [e.text for e in await lesson_store.transcript(session, lesson_id)]


NEW_USER = {"email": "made@school.test", "password": PASSWORD, "name": "Made"}
# Each route with a well-formed body: a malformed one is a 400 before anyone is asked who they are.
ROUTES: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/api/admin/users", {}),
    ("POST", "/api/admin/users", {**NEW_USER, "role": "admin"}),
    ("PATCH", "/api/admin/users/1", {"role": "learner"}),
    ("GET", "/api/admin/users/1/export", {}),
    ("DELETE", "/api/admin/users/1", {}),
    ("GET", "/api/admin/settings", {}),
    ("PATCH", "/api/admin/settings", {"registration_open": False}),
    ("POST", "/api/admin/retention/run", {}),
    ("GET", "/api/admin/usage", {}),
    ("GET", "/api/admin/status", {}),
    ("GET", "/api/admin/audit", {}),
]


async def test_only_administrators_reach_the_admin_routes(app: Quart, client: Client, new_client: Any) -> None:
    for method, path, body in ROUTES:
        assert (await error(await client.open(path, method=method, json=body), 401))["code"] == "unauthorized"
    await register(client)
    teacher = new_client()
    await accounts.register(get_state(app).db, "tess@school.test", PASSWORD, "Tess", role="teacher")
    await sign_in(teacher, "tess@school.test")
    for who in (client, teacher):
        for method, path, body in ROUTES:
            assert (await error(await who.open(path, method=method, json=body), 403))["code"] == "forbidden"
    # Nothing was changed by the refused requests: Ann is still a learner, sign-up is open, no account was made.
    root = new_client()
    await make_admin(app, root)
    assert (await row_of(root, "ann@school.test"))["role"] == "learner"
    assert (await ok(await root.get("/api/admin/settings")))["registration_open"] is True
    assert (await users(root, q="made@"))["total"] == 0
    assert (await ok(await root.get("/api/admin/audit")))["entries"] == []


async def test_an_administrator_creates_accounts_even_while_sign_up_is_closed(
    app: Quart, client: Client, new_client: Any
) -> None:
    await make_admin(app, client)
    await ok(await client.patch("/api/admin/settings", json={"registration_open": False}))

    made = await ok(await client.post("/api/admin/users", json={**NEW_USER, "role": "teacher"}), 201)
    assert (made["email"], made["name"], made["role"], made["plan"]) == ("made@school.test", "Made", "teacher", "free")
    assert (made["lessons_count"], made["disabled"], made["sso"]) == (0, False, False)
    teacher = new_client()
    assert (await ok(await sign_in(teacher, "made@school.test")))["role"] == "teacher"
    entry = (await ok(await client.get("/api/admin/audit")))["entries"][0]
    assert (entry["action"], entry["learner_id"]) == ("user.create", made["id"])
    assert entry["detail"] == "created made@school.test (teacher, free plan)"

    taken = await client.post("/api/admin/users", json={**NEW_USER, "email": "MADE@school.test"})
    assert (await error(taken, 409))["code"] == "email_taken"
    weak = await error(await client.post("/api/admin/users", json={**NEW_USER, "password": "password"}), 400)
    assert weak["code"] == "validation_error" and "common" in weak["fields"]["password"]
    shapeless = await error(await client.post("/api/admin/users", json={**NEW_USER, "email": "made"}), 400)
    assert "e-mail address like" in shapeless["fields"]["email"]
    assert (await users(client))["total"] == 2


async def test_search_finds_name_or_email_in_any_case_with_a_total(app: Quart, client: Client, new_client: Any) -> None:
    await make_admin(app, client)
    for i, (email, name) in enumerate(
        [("ann@school.test", "Ann Lee"), ("bob@school.test", "Bob Annand"), ("cy@other.test", "Cy 100%")]
    ):
        learner = new_client()
        body = await register(learner, email=email, name=name)
        if i == 0:
            companion = await create_companion(learner)
            started = await ok(await learner.post(f"/api/companions/{companion['id']}/lessons"), 201)
            await ok(await learner.post(f"/api/lessons/{started['id']}/end"))
            ann_id = body["id"]

    found = await users(client, q="ANN")
    assert [u["email"] for u in found["users"]] == ["bob@school.test", "ann@school.test"]  # newest first
    assert found["total"] == 2
    ann = found["users"][1]
    assert ann["id"] == ann_id
    assert (ann["name"], ann["role"], ann["plan"], ann["sso"]) == ("Ann Lee", "learner", "free", False)
    assert ann["disabled"] is False
    assert ann["lessons_count"] == 1 and ann["last_active_at"] is not None
    assert found["users"][0]["lessons_count"] == 0 and found["users"][0]["last_active_at"] is None

    assert [u["email"] for u in (await users(client, q="other.test"))["users"]] == ["cy@other.test"]
    # % is a character to find, not a wildcard.
    assert [u["name"] for u in (await users(client, q="100%"))["users"]] == ["Cy 100%"]
    assert (await users(client, q="1%0"))["total"] == 0
    assert [u["email"] for u in (await users(client, role="admin"))["users"]] == [ROOT]

    first = await users(client, limit=2)
    second = await users(client, limit=2, page=2)
    assert first["total"] == second["total"] == 4
    assert len(first["users"]) == 2 and len(second["users"]) == 2
    assert {u["email"] for u in first["users"] + second["users"]} == {
        ROOT,
        "ann@school.test",
        "bob@school.test",
        "cy@other.test",
    }
    assert (await users(client, page=3, limit=2))["users"] == []


async def test_a_new_role_counts_from_the_next_request(app: Quart, client: Client, new_client: Any) -> None:
    await make_admin(app, client)
    bob = new_client()
    bob_id = (await register(bob, email="bob@school.test", name="Bob"))["id"]
    assert (await bob.get("/api/admin/users")).status_code == 403

    promoted = await ok(await patch(client, bob_id, role="admin"))
    assert promoted["role"] == "admin"
    # Bob's open session: the very next request is an administrator's.
    assert (await users(bob))["total"] == 2

    demoted = await ok(await patch(client, bob_id, role="teacher"))
    assert demoted["role"] == "teacher"
    assert (await error(await bob.get("/api/admin/users"), 403))["code"] == "forbidden"
    me = await ok(await bob.get("/api/me"))
    assert (me["role"], me["is_admin"]) == ("teacher", False)


async def test_a_plan_change_shows_in_the_learners_limits(app: Quart, client: Client, new_client: Any) -> None:
    await make_admin(app, client)
    ann = new_client()
    ann_id = (await register(ann))["id"]
    assert (await ok(await ann.get("/api/me")))["usage"]["lessons"]["limit"] == 10

    assert (await ok(await patch(client, ann_id, plan="pro")))["plan"] == "pro"
    me = await ok(await ann.get("/api/me"))
    assert me["plan"] == "pro"
    assert me["usage"]["lessons"]["limit"] is None and me["usage"]["companions"]["limit"] is None


async def test_turning_an_account_off_signs_it_out_at_once(app: Quart, client: Client, new_client: Any) -> None:
    await make_admin(app, client)
    ann, ann_phone = new_client(), new_client()
    ann_id = (await register(ann))["id"]
    await sign_in(ann_phone, "ann@school.test")
    assert (await ann.get("/api/me")).status_code == 200

    off = await ok(await patch(client, ann_id, disabled=True))
    assert off["disabled"] is True
    # Both of Ann's open sessions end with the change, not at their expiry.
    assert (await ann.get("/api/me")).status_code == 401
    assert (await ann_phone.get("/api/companions")).status_code == 401
    assert (await error(await sign_in(new_client(), "ann@school.test"), 403))["code"] == "account_disabled"
    entry = (await ok(await client.get("/api/admin/audit")))["entries"][0]
    assert (entry["action"], entry["learner_id"]) == ("user.disable", ann_id)
    assert "2 sessions ended" in entry["detail"]

    assert (await ok(await patch(client, ann_id, disabled=False)))["disabled"] is False
    assert (await sign_in(ann, "ann@school.test")).status_code == 200
    assert (await ann.get("/api/me")).status_code == 200


async def test_export_holds_the_learners_lessons_and_transcripts(app: Quart, client: Client, new_client: Any) -> None:
    await make_admin(app, client)
    ann = new_client()
    ann_id = (await register(ann))["id"]
    companion = await create_companion(ann, name="Neura")
    started = await ok(await ann.post(f"/api/companions/{companion['id']}/lessons"), 201)
    db = get_state(app).db
    await lessons.append_transcript(db, started["id"], "user", "What is a neuron?")
    await lessons.end_lesson(db, started["id"], "customer-ended-call")

    response = await client.get(f"/api/admin/users/{ann_id}/export")
    data = await ok(response)
    assert "attachment" in response.headers["Content-Disposition"]
    assert data["account"]["email"] == "ann@school.test" and data["account"]["role"] == "learner"
    assert [c["name"] for c in data["companions"]] == ["Neura"]
    [lesson] = data["lessons"]
    assert lesson["id"] == started["id"] and lesson["companion"]["name"] == "Neura"
    assert [line["text"] for line in lesson["transcript"]] == ["What is a neuron?"]

    entry = (await ok(await client.get("/api/admin/audit")))["entries"][0]
    assert (entry["action"], entry["learner_id"], entry["actor_email"]) == ("user.export", ann_id, ROOT)


async def test_deleting_an_account_keeps_other_learners_lessons(app: Quart, client: Client, new_client: Any) -> None:
    await make_admin(app, client)
    ann, bob = new_client(), new_client()
    ann_id = (await register(ann))["id"]
    await register(bob, email="bob@school.test", name="Bob")
    neura = await create_companion(ann, name="Neura")
    started = await ok(await bob.post(f"/api/companions/{neura['id']}/lessons"), 201)
    await ok(await bob.post(f"/api/lessons/{started['id']}/end"))

    assert (await client.delete(f"/api/admin/users/{ann_id}")).status_code == 204

    assert (await ann.get("/api/me")).status_code == 401
    assert (await error(await sign_in(new_client(), "ann@school.test"), 401))["code"] == "invalid_credentials"
    assert [u["email"] for u in (await users(client))["users"]] == ["bob@school.test", ROOT]
    history = (await ok(await bob.get("/api/me/lessons")))["items"]
    assert [(x["id"], x["companion"]["name"]) for x in history] == [(started["id"], "Neura")]
    entry = (await ok(await client.get("/api/admin/audit")))["entries"][0]
    assert entry["action"] == "user.delete" and "ann@school.test" in entry["detail"]
    assert (await error(await client.get(f"/api/admin/users/{ann_id}/export"), 404))["code"] == "user_not_found"


async def test_closed_registration_refuses_sign_up_and_the_page_is_told(
    app: Quart, client: Client, new_client: Any
) -> None:
    await make_admin(app, client)
    assert await ok(await client.get("/api/admin/settings")) == {"registration_open": True, "retention_days": None}

    closed = await ok(await client.patch("/api/admin/settings", json={"registration_open": False}))
    assert closed == {"registration_open": False, "retention_days": None}
    visitor = new_client()
    assert (await ok(await visitor.get("/api/config")))["registration"] is False
    refused = await visitor.post(
        "/api/auth/register", json={"email": "new@school.test", "password": PASSWORD, "name": "New"}
    )
    assert (await error(refused, 403))["code"] == "registration_closed"
    assert (await users(client, q="new@"))["total"] == 0

    await ok(await client.patch("/api/admin/settings", json={"registration_open": True}))
    assert (await ok(await visitor.get("/api/config")))["registration"] is True
    await register(visitor, email="new@school.test", name="New")


async def test_retention_days_are_kept_and_a_run_deletes_only_old_transcripts(app: Quart, client: Client) -> None:
    await make_admin(app, client)
    learner = await accounts.register(get_state(app).db, "ann@school.test", PASSWORD, "Ann")
    old = await add_lesson(app, learner.id, days_ago=40, lines=("old one", "old two"))
    recent = await add_lesson(app, learner.id, days_ago=10, lines=("recent",))
    assert (await error(await client.post("/api/admin/retention/run"), 409))["code"] == "retention_off"

    kept = await ok(await client.patch("/api/admin/settings", json={"retention_days": 30}))
    assert kept == {"registration_open": True, "retention_days": 30}
    assert (await ok(await client.get("/api/admin/settings")))["retention_days"] == 30

    assert await ok(await client.post("/api/admin/retention/run")) == {"transcripts_deleted": 2}
    assert await transcript_lines(app, old) == []
    assert await transcript_lines(app, recent) == ["recent"]
    # The lessons themselves stay in the history.
    assert (await row_of(client, "ann@school.test"))["lessons_count"] == 2
    assert await ok(await client.post("/api/admin/retention/run")) == {"transcripts_deleted": 0}

    forever = await ok(await client.patch("/api/admin/settings", json={"retention_days": None}))
    assert forever["retention_days"] is None
    [entry, *_] = (await ok(await client.get("/api/admin/audit")))["entries"]
    assert entry["action"] == "settings.change" and "kept for good" in entry["detail"]


async def test_the_server_deletes_old_transcripts_by_itself(tmp_path: Path, database_url: str) -> None:
    env = {"RETENTION__DAYS": "30", "RETENTION__INTERVAL_SECS": "0.05"}
    if database_url:
        env["DATABASE__URL"] = database_url
    app = create_app(make_settings(tmp_path, **env))
    async with app.test_app():
        learner = await accounts.register(get_state(app).db, "ann@school.test", PASSWORD, "Ann")
        old = await add_lesson(app, learner.id, days_ago=31, lines=("old",))
        recent = await add_lesson(app, learner.id, days_ago=1, lines=("recent",))
        for _ in range(200):
            if not await transcript_lines(app, old):
                break
            await asyncio.sleep(0.05)
        assert await transcript_lines(app, old) == []
        assert await transcript_lines(app, recent) == ["recent"]
    # The app stopped its background task with it (the test would hang or warn otherwise).
    assert "retention" not in get_state(app).extras


async def test_usage_across_the_school(app: Quart, client: Client, new_client: Any) -> None:
    await make_admin(app, client)
    db = get_state(app).db
    ann = await accounts.register(db, "ann@school.test", PASSWORD, "Ann")
    bob = await accounts.register(db, "bob@school.test", PASSWORD, "Bob", plan="pro")
    cy = await accounts.register(db, "cy@school.test", PASSWORD, "Cy")
    await accounts.register(db, "tess@school.test", PASSWORD, "Tess", role="teacher")
    await accounts.set_disabled(db, cy.id, True)
    for _ in range(8):  # 8 of the free plan's 10: near the limit
        await add_lesson(app, ann.id, days_ago=40, seconds=60)
    for _ in range(12):  # unlimited on pro: never near
        await add_lesson(app, bob.id, days_ago=2, seconds=90)
    for _ in range(9):  # near, but turned off
        await add_lesson(app, cy.id, days_ago=20, seconds=30)

    usage = await ok(await client.get("/api/admin/usage"))
    assert usage["users"] == {"learner": 3, "teacher": 1, "admin": 1, "disabled": 1}
    assert usage["plans"] == {"free": 4, "core": 0, "pro": 1}
    assert usage["lessons"] == {"total": 29, "last_7_days": 12, "minutes_last_30_days": (12 * 90 + 9 * 30) // 60}
    assert usage["near_limit"] == [
        {"id": ann.id, "name": "Ann", "plan": "free", "lessons_used": 8, "lessons_limit": 10}
    ]


async def test_status_lists_the_database_and_the_language_model(tmp_path: Path, database_url: str) -> None:
    # A language model address where nothing answers: the page must say so, not hang or crash.
    env = {"VOICE__LLM__PROVIDER": "openai", "VOICE__LLM__BASE_URL": "http://127.0.0.1:9/v1"}
    if database_url:
        env["DATABASE__URL"] = database_url
    app = create_app(make_settings(tmp_path, **env))
    async with app.test_app():
        client = app.test_client()
        await make_admin(app, client)
        checks = {c["name"]: c for c in (await ok(await client.get("/api/admin/status")))["checks"]}
    assert checks["database"]["ok"] is True
    assert "reachable, schema" in checks["database"]["detail"]
    assert checks["voice backend"] == {"name": "voice backend", "ok": True, "detail": "local"}
    assert checks["voice models"]["ok"] is True and "not loaded yet" in checks["voice models"]["detail"]
    assert checks["LLM"]["ok"] is False and "nothing answers at http://127.0.0.1:9/v1" in checks["LLM"]["detail"]


async def test_the_audit_log_names_each_action_and_its_actor(app: Quart, client: Client, new_client: Any) -> None:
    admin = await make_admin(app, client)
    ann = await accounts.register(get_state(app).db, "ann@school.test", PASSWORD, "Ann")
    bob = await accounts.register(get_state(app).db, "bob@school.test", PASSWORD, "Bob")
    await ok(await patch(client, ann.id, plan="core", role="teacher"))
    await ok(await patch(client, ann.id, disabled=True))
    await ok(await patch(client, ann.id, disabled=False))
    await ok(await client.get(f"/api/admin/users/{bob.id}/export"))
    await ok(await client.patch("/api/admin/settings", json={"registration_open": False, "retention_days": 90}))
    await ok(await client.post("/api/admin/retention/run"))
    assert (await client.delete(f"/api/admin/users/{bob.id}")).status_code == 204
    # Changing nothing writes nothing.
    await ok(await patch(client, ann.id, plan="core"))

    log = await ok(await client.get("/api/admin/audit"))
    actions = [(e["action"], e["learner_id"]) for e in log["entries"]]
    assert actions == [
        ("user.delete", None),
        ("retention.run", None),
        ("settings.change", None),
        ("user.export", None),  # Bob's id went with his account
        ("user.enable", ann.id),
        ("user.disable", ann.id),
        ("user.plan", ann.id),
        ("user.role", ann.id),
    ]
    assert {(e["actor_id"], e["actor_email"]) for e in log["entries"]} == {(admin["id"], ROOT)}
    details = [e["detail"] for e in log["entries"]]
    assert details[2] == "registration closed; transcripts kept for good -> 90 days"
    assert details[6] == "ann@school.test: free -> core" and details[7] == "ann@school.test: learner -> teacher"
    assert log["next_before"] is None

    first = await ok(await client.get("/api/admin/audit", query_string={"limit": 3}))
    assert [e["action"] for e in first["entries"]] == ["user.delete", "retention.run", "settings.change"]
    rest = await ok(await client.get("/api/admin/audit", query_string={"limit": 10, "before": first["next_before"]}))
    assert [e["action"] for e in rest["entries"]] == [a for a, _ in actions[3:]]
    assert rest["next_before"] is None


async def test_an_administrator_cannot_demote_turn_off_or_delete_themself(
    app: Quart, client: Client, new_client: Any
) -> None:
    me = await make_admin(app, client)
    for change in ({"role": "teacher"}, {"role": "learner"}, {"disabled": True}):
        assert (await error(await patch(client, me["id"], **change), 409))["code"] == "cannot_change_self"
    assert (await error(await client.delete(f"/api/admin/users/{me['id']}"), 409))["code"] == "cannot_change_self"
    # What does not take the role away is fine.
    assert (await ok(await patch(client, me["id"], plan="pro", role="admin")))["plan"] == "pro"
    row = await row_of(client, ROOT)
    assert (row["role"], row["disabled"]) == ("admin", False)
    assert [e["action"] for e in (await ok(await client.get("/api/admin/audit")))["entries"]] == ["user.plan"]


async def test_two_administrators_demoting_each_other_leave_one(app: Quart, client: Client, new_client: Any) -> None:
    root = await make_admin(app, client)
    other = new_client()
    bea = await make_admin(app, other, "bea@school.test", "Bea")
    answers = await asyncio.gather(patch(client, bea["id"], role="learner"), patch(other, root["id"], role="learner"))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200, 403], [await a.get_data(as_text=True) for a in answers]
    refused = await error(next(a for a in answers if a.status_code == 403), 403)
    assert refused["code"] == "forbidden"
    survivor = client if answers[0].status_code == 200 else other
    admins = (await users(survivor, role="admin"))["users"]
    assert [u["email"] for u in admins] == [ROOT if survivor is client else "bea@school.test"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"role": "superuser"}, "role"),
        ({"plan": "gold"}, "plan"),
        ({"disabled": "maybe"}, "disabled"),
        ({"name": "Renamed"}, "name"),
    ],
)
async def test_bad_changes_are_a_400_that_names_the_field(
    app: Quart, client: Client, body: dict[str, Any], field: str
) -> None:
    me = await make_admin(app, client)
    problem = await error(await client.patch(f"/api/admin/users/{me['id']}", json=body), 400)
    assert problem["code"] == "validation_error" and field in problem["fields"]
    assert (await row_of(client, ROOT))["plan"] == "free"


async def test_bad_settings_and_queries_are_a_400(app: Quart, client: Client) -> None:
    await make_admin(app, client)
    for body in ({"retention_days": -1}, {"retention_days": "soon"}, {"registration_open": "perhaps"}, {"x": 1}):
        assert (await error(await client.patch("/api/admin/settings", json=body), 400))["code"] == "validation_error"
    assert await ok(await client.get("/api/admin/settings")) == {"registration_open": True, "retention_days": None}
    for path, query in [
        ("/api/admin/users", {"role": "boss"}),
        ("/api/admin/users", {"limit": 0}),
        ("/api/admin/users", {"page": "two"}),
        ("/api/admin/users", {"q": "x" * 201}),
        ("/api/admin/audit", {"before": 0}),
        ("/api/admin/audit", {"limit": 500}),
    ]:
        problem = await error(await client.get(path, query_string=query), 400)
        assert problem["code"] == "validation_error", (path, query)


async def test_an_unknown_user_is_a_404(app: Quart, client: Client) -> None:
    await make_admin(app, client)
    for response in (
        await patch(client, 999, plan="pro"),
        await client.get("/api/admin/users/999/export"),
        await client.delete("/api/admin/users/999"),
    ):
        assert (await error(response, 404))["code"] == "user_not_found"
    assert [e["action"] for e in (await ok(await client.get("/api/admin/audit")))["entries"]] == []


async def test_a_flags_words_go_with_its_transcript_and_the_export_carries_flags(app: Quart, client: Client) -> None:
    from sqlalchemy import select

    from server.store.models import SafetyFlag

    await make_admin(app, client)
    learner = await accounts.register(get_state(app).db, "ann@school.test", PASSWORD, "Ann")
    old = await add_lesson(app, learner.id, days_ago=40, lines=("my number is 0161 496 0000",))
    recent = await add_lesson(app, learner.id, days_ago=1, lines=("call me on 0161 496 0001",))
    async with get_state(app).db.write() as session:
        for lesson_id, text in ((old, "my number is 0161 496 0000"), (recent, "call me on 0161 496 0001")):
            session.add(
                SafetyFlag(
                    lesson_id=lesson_id,
                    learner_id=learner.id,
                    role="user",
                    text=text,
                    category="personal_data",
                    severity="medium",
                    source="local",
                    action="none",
                )
            )
    exported = await ok(await client.get(f"/api/admin/users/{learner.id}/export"))
    assert [f["text"] for f in exported["safety_flags"]] == ["my number is 0161 496 0000", "call me on 0161 496 0001"]

    await ok(await client.patch("/api/admin/settings", json={"retention_days": 30}))
    await ok(await client.post("/api/admin/retention/run"))
    async with get_state(app).db.read() as session:
        flags = (await session.execute(select(SafetyFlag).order_by(SafetyFlag.id))).scalars().all()
    # The flag stays as a record of what happened; the old one's words went with its transcript.
    assert [(f.lesson_id, f.category, f.text) for f in flags] == [
        (old, "personal_data", ""),
        (recent, "personal_data", "call me on 0161 496 0001"),
    ]
