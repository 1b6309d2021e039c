"""Sharing objects: presigned GET and PUT URLs, and revocable share links.

``router`` (under /api/v1, authenticated) makes presigned URLs and manages links; the
bucket grants decide who may (controlplane/storage/access.py). ``public`` serves
``/s/{token}`` at the root with no login: the token is the credential. The rules live in
controlplane/storage/shares.py."""

from __future__ import annotations

import uuid
from http import HTTPStatus
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import PlainTextResponse, RedirectResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from controlplane.api.deps import caller_of, storage_of
from controlplane.api.problems import problem
from controlplane.clock import utcnow
from controlplane.storage import shares
from controlplane.storage.access import Caller
from controlplane.storage.client import Storage
from controlplane.web import DB_SESSION, READ_SESSION, client_address

router = APIRouter(prefix="/storage", tags=["storage"])
public = APIRouter(tags=["storage"])  # /s/{token}: the token is the credential

# The ranges (expires_s, max_downloads) are checked by the use case, which names the field
# and the limit in force; these caps only keep absurd input from reaching it.
Bucket = Field(min_length=1, max_length=255, description="A bucket coreplane manages.")
Key = Field(min_length=1, max_length=4096, description="An object key (at most 1,024 bytes of UTF-8).")
VersionId = Field(None, min_length=1, max_length=200, description="A version (default: the latest).")


State = Literal[shares.STATES]  # type: ignore[valid-type]  # the states shares.py defines, once


class PresignIn(BaseModel):
    bucket: str = Bucket
    key: str = Key
    method: Literal["GET", "PUT"] = Field(description="GET (read on the bucket) or PUT (write).")
    expires_s: int = Field(description="Seconds the URL is valid: 1 to storage.presign_max_s.")
    version_id: str | None = VersionId


class ShareIn(BaseModel):
    bucket: str = Bucket
    key: str = Key
    version_id: str | None = VersionId
    expires_s: int = Field(
        shares.DEFAULT_SHARE_S, description="Seconds the link lives: 1 to storage.share_max_days days."
    )
    max_downloads: int | None = Field(None, description="Downloads at most (1 to 1,000,000; none: no limit).")


# -- presigned URLs -------------------------------------------------------------------------


@router.post("/presign", summary="A presigned GET or PUT URL (expires; cannot be revoked)")
def presign(
    request: Request,
    presign_in: PresignIn,
    caller: Caller = Depends(caller_of),
    storage: Storage = Depends(storage_of),
    session: Session = DB_SESSION,
) -> dict[str, Any]:
    return shares.presign(
        session, storage, caller, presign_in.bucket, presign_in.key, method=presign_in.method,
        expires_s=presign_in.expires_s, version_id=presign_in.version_id, client=client_address(request),
        now=utcnow(),
    )  # fmt: skip


# -- share links ----------------------------------------------------------------------------


@router.post(
    "/shares", status_code=201, summary="A revocable share link /s/{token} (the token is shown once)"
)
def create_share(
    request: Request,
    share_in: ShareIn,
    caller: Caller = Depends(caller_of),
    storage: Storage = Depends(storage_of),
    session: Session = DB_SESSION,
) -> dict[str, Any]:
    share, token = shares.create(
        session, storage, caller, share_in.bucket, share_in.key, version_id=share_in.version_id,
        expires_s=share_in.expires_s, max_downloads=share_in.max_downloads, client=client_address(request),
        now=utcnow(),
    )  # fmt: skip
    shown = shares.as_dict(share, utcnow())
    return shown | {
        "url": shares.link(request.app.state.settings, str(request.base_url), token),
        "token": token,
    }


@router.get("/shares", summary="Share links, newest first (never their tokens)")
def list_shares(
    bucket: Annotated[str | None, Query(max_length=255)] = None,
    key: Annotated[str | None, Query(max_length=4096, description="One key's links (needs bucket).")] = None,
    state: Annotated[State | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=shares.LIST_MAX)] = 100,
    caller: Caller = Depends(caller_of),
    session: Session = READ_SESSION,
) -> dict[str, Any]:
    found = shares.listing(session, caller, bucket=bucket, key=key, state=state, limit=limit, now=utcnow())
    return {"shares": found}


@router.get("/shares/{share_id}", summary="One share link")
def read_share(
    share_id: Annotated[uuid.UUID, Path()],
    caller: Caller = Depends(caller_of),
    session: Session = READ_SESSION,
) -> dict[str, Any]:
    return shares.as_dict(shares.get(session, caller, share_id), utcnow())


@router.delete("/shares/{share_id}", summary="Revoke a share link: dead at once")
def revoke_share(
    request: Request,
    share_id: Annotated[uuid.UUID, Path()],
    caller: Caller = Depends(caller_of),
    session: Session = DB_SESSION,
) -> dict[str, Any]:
    now = utcnow()
    return shares.as_dict(
        shares.revoke(session, caller, share_id, client=client_address(request), now=now), now
    )


# -- /s/{token} (no login) ------------------------------------------------------------------

# The link and the URL it redirects to are credentials: no cache may keep them and no page
# the object opens may learn them from the Referer.
PRIVATE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
Token = Annotated[str, Path(description="The share link's token.")]


def _answer(request: Request, opened: shares.Opened) -> Response:
    """A link's state as HTTP, in one place: 302 to the URL, 200 active (HEAD), 404 unknown,
    410 for any other dead state."""
    if opened.url is not None:
        return RedirectResponse(opened.url, 302, headers=PRIVATE)
    if opened.state == "active":
        return Response(status_code=200, headers=PRIVATE)
    status = 404 if opened.state == "unknown" else 410
    phrase = HTTPStatus(status).phrase
    if "json" in request.headers.get("accept", ""):
        answer = problem(status, phrase, opened.detail, state=opened.state)
        answer.headers.update(PRIVATE)
        return answer
    return PlainTextResponse(f"{status} {phrase}: {opened.detail}\n", status, headers=PRIVATE)


@public.head("/s/{token}", include_in_schema=False)
def check_link(request: Request, token: Token, session: Session = READ_SESSION) -> Response:
    """Whether the link is live (200, 404 or 410): no URL given, no download counted."""
    return _answer(request, shares.look_up(session, token, utcnow())[1])


@public.get("/s/{token}", summary="Open a share link: 302 to a short-lived presigned GET, or 404/410")
def open_link(
    request: Request, token: Token, storage: Storage = Depends(storage_of), session: Session = DB_SESSION
) -> Response:
    return _answer(
        request, shares.open_link(session, storage, token, client=client_address(request), now=utcnow())
    )
