"""Who an HTTP request is: its bearer token (header or login cookie) -> a name -> a role.

The token file is ``root/httpauth.py``'s; the name a token speaks for maps to a
role through the roles file exactly as a CurveZMQ client key's name does (the
root's ``caller`` does that mapping, the same one its query socket uses). With no
tokens file the port is on loopback (the config refuses anything else) and the
caller is the local admin, like the query port's loopback rule before roles.

A browser logs in once: the login page takes the token and keeps it in a cookie
(HttpOnly, SameSite=Strict: scripts cannot read it, other sites cannot send it),
accepted like the ``Authorization`` header.
"""

from __future__ import annotations

import html
from typing import Callable
from urllib.parse import quote

from aiohttp import web

from clumon.root.httpauth import HttpAuth

COOKIE = "clumon_token"
#: a login lasts a week; the token itself is checked on every request
COOKIE_AGE = 7 * 86400

#: where a request keeps its caller (a ``roles.Principal``)
PRINCIPAL = "clumon.principal"


def credential(request: web.Request) -> str | None:
    """The request's ``Authorization`` header, else its login cookie as one."""
    header = request.headers.get("Authorization")
    if header:
        return header
    cookie = request.cookies.get(COOKIE)
    return f"Bearer {cookie}" if cookie else None


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a path of this site only (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def refuse(request: web.Request) -> web.StreamResponse:
    """No valid token: a page asks for a login, anything else is told 401 in one line."""
    path = request.path
    if request.method == "GET" and not path.startswith(("/api/", "/metrics", "/static/")):
        raise web.HTTPSeeOther(f"/login?next={quote(request.path_qs)}")
    if path.startswith("/api/"):
        return web.json_response({"ok": False, "error": {
            "code": "unauthorized", "message": "a valid bearer token is needed (Authorization: Bearer TOKEN)"}},
            status=401, headers={"WWW-Authenticate": 'Bearer realm="clumon"'})
    return web.Response(status=401, text="a valid bearer token is needed here\n",
                        headers={"WWW-Authenticate": 'Bearer realm="clumon"'})


def middleware(auth: HttpAuth, caller: Callable[[str, str | None], object]):
    """Sets ``request[PRINCIPAL]`` for every request but the login page's."""
    @web.middleware
    async def who(request: web.Request, handler):
        if request.path in ("/login", "/logout"):
            return await handler(request)
        name = auth.who(credential(request))
        if name is None:
            return refuse(request)
        request[PRINCIPAL] = caller(name, request.remote)
        return await handler(request)
    return who


LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Clumon+ login</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{{font:15px system-ui,sans-serif;background:#10151c;color:#dde3ea;display:flex;justify-content:center;
margin-top:12vh}} form{{background:#1a222c;padding:24px 28px;border-radius:8px;width:26em}}
input{{width:100%;box-sizing:border-box;padding:8px;margin:10px 0;background:#0d1117;color:#dde3ea;
border:1px solid #3a4656;border-radius:4px;font-family:monospace}}
button{{padding:8px 18px;background:#2f81f7;color:white;border:0;border-radius:4px}}
.err{{color:#ff7b72}} .hint{{color:#8b98a8;font-size:13px}}
</style></head><body>
<form method="post" action="/login"><h2>Clumon+</h2>
<p class="err" id="err">{error}</p>
<label for="token">Access token</label>
<input id="token" name="token" type="password" autocomplete="off" autofocus>
<input type="hidden" name="next" value="{next}">
<button type="submit">Log in</button>
<p class="hint">Your administrator makes one with <code>clumon keys token NAME</code>.</p>
</form></body></html>
"""


def login_page(error: str = "", next_path: str = "/", status: int = 200) -> web.Response:
    return web.Response(text=LOGIN_PAGE.format(error=html.escape(error), next=html.escape(next_path)),
                        content_type="text/html", status=status)


def routes(auth: HttpAuth) -> list[web.RouteDef]:
    """``/login`` (the form and its answer) and ``/logout``."""
    async def form(request: web.Request) -> web.Response:
        if not auth.required:
            raise web.HTTPSeeOther(safe_next(request.query.get("next")))
        return login_page(next_path=safe_next(request.query.get("next")))

    async def login(request: web.Request) -> web.Response:
        data = await request.post()
        token = str(data.get("token", "")).strip()
        target = safe_next(str(data.get("next", "/")))
        if not auth.required:
            raise web.HTTPSeeOther(target)
        if not token or auth.who(f"Bearer {token}") is None:
            return login_page("That token is not accepted here.", target, status=401)
        answer = web.HTTPSeeOther(target)
        answer.set_cookie(COOKIE, token, max_age=COOKIE_AGE, httponly=True, samesite="Strict", path="/")
        raise answer

    async def logout(request: web.Request) -> web.Response:
        answer = web.HTTPSeeOther("/login")
        answer.del_cookie(COOKIE, path="/")
        raise answer

    return [web.get("/login", form), web.post("/login", login), web.get("/logout", logout)]
