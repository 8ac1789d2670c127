"""Watch streams: only the events after the requested resourceVersion, filtered, ended by timeoutSeconds.

With no resourceVersion (or "0") the stream starts with a synthetic ADDED for every current object, as the real
server does. A label or field selector turns an object that stops matching into DELETED and one that starts
matching into ADDED. A resourceVersion older than the kept log gets an ERROR event with a 410 Status.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from tests.support.emulator import errors
from tests.support.emulator.resources import ResourceType
from tests.support.emulator.selectors import field_selector, label_selector
from tests.support.emulator.store import Store, WatchEvent

# How often an idle watch checks whether its client left or the server is stopping.
_POLL_SECONDS = 0.5


class WatchRequest:
    def __init__(self, rtype: ResourceType, namespace: str | None, name: str | None, params: Mapping[str, str]) -> None:
        self.rtype = rtype
        self.namespace = namespace
        by_label = label_selector(params.get("labelSelector"))
        selector = params.get("fieldSelector") or ""
        if name is not None:  # GET .../<name>?watch=true watches one object
            selector = ",".join(filter(None, [selector, f"metadata.name={name}"]))
        by_field = field_selector(selector, rtype.kind)
        self.matches: Callable[[Mapping[str, Any]], bool] = lambda obj: by_label(obj) and by_field(obj)
        self.resource_version = params.get("resourceVersion") or ""
        timeout = params.get("timeoutSeconds")
        self.timeout = float(timeout) if timeout else None
        self.bookmarks = params.get("allowWatchBookmarks") in ("true", "1")

    def visible(self, event: WatchEvent) -> dict[str, Any] | None:
        """The event as this watcher sees it, or None."""
        if event.rtype.key != self.rtype.key:
            return None
        if self.namespace is not None and event.namespace != self.namespace:
            return None
        now_matches = self.matches(event.object)
        before_matched = event.previous is not None and self.matches(event.previous)
        if event.type == "MODIFIED" and now_matches and not before_matched:
            return {"type": "ADDED", "object": event.object}
        if event.type == "MODIFIED" and before_matched and not now_matches:
            return {"type": "DELETED", "object": event.object}
        if event.type == "DELETED":
            return {"type": "DELETED", "object": event.object} if before_matched or now_matches else None
        return {"type": event.type, "object": event.object} if now_matches else None


async def stream(
    store: Store,
    watch: WatchRequest,
    still_wanted: Callable[[], bool],
    open_watches: collections.Counter[str],
    render: Callable[[dict[str, Any]], dict[str, Any]] = lambda obj: obj,
) -> AsyncIterator[bytes | dict[str, Any]]:
    """The event stream; `open_watches` counts the live streams per plural (tests wait on it for an operator);
    `render` turns each object into what the client asked for (a Table row for `kubectl get -w`)."""
    loop = asyncio.get_running_loop()
    deadline = None if watch.timeout is None else loop.time() + watch.timeout
    yield b""  # send the headers now: a watch may have nothing to say for a long time
    marker = await store.bus.mark()
    pending: asyncio.Future[WatchEvent] | None = None
    counted = False
    try:
        if watch.resource_version in ("", "0"):
            since = store.revision
            for obj in store.objects_of(watch.rtype, watch.namespace):
                if watch.matches(obj):
                    yield {"type": "ADDED", "object": render(obj)}
        else:
            since = int(watch.resource_version) if watch.resource_version.isdigit() else -1
            backlog = store.events_since(since) if since >= 0 else None
            # Events after this point come from the bus (marked above); the snapshot covers those before it.
            snapshot_revision = store.revision
            if backlog is None:
                gone = errors.gone(f"too old resource version: {watch.resource_version} ({store.compacted})")
                yield {"type": "ERROR", "object": gone.status_body()}
                return
            for event in backlog:
                if (visible := watch.visible(event)) is not None:
                    yield {"type": visible["type"], "object": render(visible["object"])}
            since = snapshot_revision
        live = aiter(store.bus.stream(since=marker))
        open_watches[watch.rtype.plural] += 1
        counted = True
        while still_wanted():
            wait = _POLL_SECONDS if deadline is None else min(_POLL_SECONDS, deadline - loop.time())
            if wait <= 0:
                break
            # The pending read survives the poll timeout: cancelling it could drop events the bus already handed out.
            if pending is None:
                pending = asyncio.ensure_future(anext(live))
            done, _ = await asyncio.wait({pending}, timeout=wait)
            if not done:
                continue
            event, pending = pending.result(), None
            if event.revision > since and (visible := watch.visible(event)) is not None:
                yield {"type": visible["type"], "object": render(visible["object"])}
        if watch.bookmarks:
            bookmark = {"apiVersion": watch.rtype.api_version, "kind": watch.rtype.kind}
            yield {"type": "BOOKMARK", "object": {**bookmark, "metadata": {"resourceVersion": str(store.revision)}}}
    finally:
        if counted:
            open_watches[watch.rtype.plural] -= 1
        if pending is not None:
            pending.cancel()
        await store.bus.unmark(marker)
