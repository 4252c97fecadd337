"""Who may use each school console route: anonymous, a learner, another teacher, the class's teacher, an admin.

Every route runs in a small school (a teacher's class with one learner who held a lesson, and a flag raised in
it) on SQLite and PostgreSQL. The refused callers go first, and the allowed caller's request then still works:
a refused request changed nothing it could have destroyed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from server import lessons
from server.state import get_state
from server.store.models import SafetyFlag
from tests.conftest import create_companion, register, sign_in_as

ANON, LEARNER, OTHER, TEACHER, ADMIN = "anonymous", "learner", "other teacher", "teacher", "admin"


@dataclass
class School:
    clients: dict[str, Any]
    ids: dict[str, int]
    code: str


async def _school(app, client, new_client) -> School:
    clients = {ANON: new_client(), LEARNER: new_client(), OTHER: new_client(), TEACHER: client, ADMIN: new_client()}
    await sign_in_as(app, clients[TEACHER], "teach@school.test", "teacher", "Ms Rivera")
    await sign_in_as(app, clients[OTHER], "other@school.test", "teacher", "Mr Other")
    await sign_in_as(app, clients[ADMIN], "head@school.test", "admin", "Head")
    learner = await register(clients[LEARNER], "ann@school.test", "Ann")
    school_class = await (await clients[TEACHER].post("/api/classes", json={"name": "7B"})).get_json()
    await clients[LEARNER].post("/api/classes/join", json={"code": school_class["join_code"]})
    companion = await create_companion(clients[LEARNER], name="Cella")
    lesson = await (await clients[LEARNER].post(f"/api/companions/{companion['id']}/lessons")).get_json()
    db = get_state(app).db
    await lessons.append_transcript(db, lesson["id"], "user", "hello")
    await lessons.end_lesson(db, lesson["id"], "customer-ended-call")
    async with db.write() as session:
        flag = SafetyFlag(
            lesson_id=lesson["id"],
            learner_id=learner["id"],
            role="user",
            text="a flagged thing",
            category="abuse",
            severity="medium",
            source="local",
            action="none",
        )
        session.add(flag)
        await session.flush()
        flag_id = flag.id
    ids = {"class": school_class["id"], "learner": learner["id"], "lesson": lesson["id"]}
    ids |= {"companion": companion["id"], "flag": flag_id}
    ids["other_learner"] = (await register(new_client(), "bob@school.test", "Bob"))["id"]
    # Retention on, so that running it is something an administrator can do.
    assert (await clients[ADMIN].patch("/api/admin/settings", json={"retention_days": 365})).status_code == 200
    return School(clients, ids, school_class["join_code"])


# (method, path, body, who may: the statuses the allowed callers get; everyone else gets the refusal below)
T = (TEACHER, ADMIN)
A = (ADMIN,)
ROUTES: list[tuple[str, str, Any, tuple[str, ...], int]] = [
    ("GET", "/api/classes", None, T, 200),
    ("POST", "/api/classes", {"name": "New"}, T, 201),
    ("GET", "/api/classes/{class}", None, T, 200),
    ("PATCH", "/api/classes/{class}", {"name": "7C"}, T, 200),
    ("POST", "/api/classes/{class}/join-code", None, T, 200),
    ("POST", "/api/classes/{class}/learners", {"email": "bob@school.test"}, T, 201),
    ("DELETE", "/api/classes/{class}/learners/{learner}", None, T, 204),
    ("GET", "/api/classes/{class}/learners/{learner}/lessons", None, T, 200),
    ("GET", "/api/classes/{class}/lessons/{lesson}", None, T, 200),
    ("PUT", "/api/classes/{class}/companions/{companion}", None, T, 204),
    ("DELETE", "/api/classes/{class}?confirm=true", None, T, 200),
    ("GET", "/api/safety/flags", None, T, 200),
    ("GET", "/api/safety/flags?class_id={class}", None, T, 200),
    ("GET", "/api/safety/alerts", None, T, 200),
    ("GET", "/api/admin/users", None, A, 200),
    ("GET", "/api/admin/users?q=ann", None, A, 200),
    ("PATCH", "/api/admin/users/{learner}", {"plan": "pro"}, A, 200),
    ("GET", "/api/admin/users/{learner}/export", None, A, 200),
    ("DELETE", "/api/admin/users/{other_learner}", None, A, 204),
    ("GET", "/api/admin/settings", None, A, 200),
    ("PATCH", "/api/admin/settings", {"retention_days": 365}, A, 200),
    ("POST", "/api/admin/retention/run", None, A, 200),
    ("GET", "/api/admin/usage", None, A, 200),
    ("GET", "/api/admin/status", None, A, 200),
    ("GET", "/api/admin/audit", None, A, 200),
]

# Another teacher asking for this class's things is told it does not exist; a wrong role is 403.
CLASS_SPECIFIC = "{class}"


def _refusal(who: str, path: str, allowed: tuple[str, ...]) -> int:
    if who == ANON:
        return 401
    if who == OTHER and allowed == T and CLASS_SPECIFIC in path:
        return 404
    return 403


@pytest.mark.parametrize("allowed_caller", [TEACHER, ADMIN])
@pytest.mark.parametrize(
    ("method", "template", "body", "allowed", "status"), ROUTES, ids=[f"{r[0]} {r[1]}" for r in ROUTES]
)
async def test_each_console_route_answers_only_whom_it_should(
    app, client, new_client, method, template, body, allowed, status, allowed_caller
):
    if allowed_caller not in allowed:
        pytest.skip(f"{allowed_caller} is not among those this route serves")
    school = await _school(app, client, new_client)
    path = template.format(**school.ids)
    for who in (ANON, LEARNER, OTHER, TEACHER, ADMIN):
        # Any teacher may list their own classes, make one, and list flags and alerts (of their own classes).
        if who in allowed or (who == OTHER and allowed == T and CLASS_SPECIFIC not in template):
            continue
        response = await school.clients[who].open(path, method=method, json=body)
        expected = _refusal(who, template, allowed)
        assert response.status_code == expected, (who, await response.get_data(as_text=True))
        error = (await response.get_json())["error"]
        assert error["code"] and error["message"]
    response = await school.clients[allowed_caller].open(path, method=method, json=body)
    assert response.status_code == status, await response.get_data(as_text=True)


async def test_another_teacher_sees_no_flag_or_class_of_this_one(app, client, new_client):
    school = await _school(app, client, new_client)
    other = school.clients[OTHER]
    assert (await (await other.get("/api/classes")).get_json())["classes"] == []
    flags = await (await other.get("/api/safety/flags")).get_json()
    assert flags["flags"] == []
    teacher_flags = await (await school.clients[TEACHER].get("/api/safety/flags")).get_json()
    assert [f["id"] for f in teacher_flags["flags"]] == [school.ids["flag"]]
    admin_flags = await (await school.clients[ADMIN].get("/api/safety/flags")).get_json()
    assert [f["id"] for f in admin_flags["flags"]] == [school.ids["flag"]]
    refused = await other.get(f"/api/safety/flags?class_id={school.ids['class']}")
    assert refused.status_code in (200, 404)
    if refused.status_code == 200:
        assert (await refused.get_json())["flags"] == []


async def test_learner_routes_serve_only_the_learner_themself(app, client, new_client):
    school = await _school(app, client, new_client)
    assert (await school.clients[ANON].get("/api/me/classes")).status_code == 401
    assert (await school.clients[ANON].post("/api/classes/join", json={"code": school.code})).status_code == 401
    mine = await (await school.clients[LEARNER].get("/api/me/classes")).get_json()
    assert [c["id"] for c in mine["classes"]] == [school.ids["class"]]
    # A teacher is not a learner of their own class.
    joined = await school.clients[OTHER].post("/api/classes/join", json={"code": school.code})
    assert joined.status_code == 400 and (await joined.get_json())["error"]["code"] == "not_a_learner"
