"""The HTTP face of the emulator: a kmock handler that parses Kubernetes URLs and routes them to the verbs.

kmock supplies the HTTP server, the request log, the reaction DSL (tests can still inject faults with
`emulator["patch", kmock.resource("batch/v1/jobs")] << 500`, which outranks the emulator's own fallback routes),
the Status rendering of errors, the discovery registry and the versioned object store. What it gets wrong for an
operator is replaced here; tests/support/README.md lists each point.
"""

from __future__ import annotations

import collections
import json
import re
from typing import Any

import aiohttp.web
import attrs
import kmock
import yaml
from kmock._internal import dsl, rendering
from typing_extensions import override

from tests.support.emulator import discovery, errors, protobuf, tables, watch
from tests.support.emulator.api import Api
from tests.support.emulator.resources import ResourceType

JSON = "application/json"
_API_PATH = re.compile(r"^/(?:api/(?P<core>[^/]+)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))(?P<rest>(?:/[^/]+)*)/?$")


@attrs.frozen
class Target:
    """What a Kubernetes URL addresses."""

    group: str
    version: str
    plural: str | None
    namespace: str | None
    name: str | None
    subresource: str | None


def parse_path(path: str) -> Target | None:
    """`/api/v1/namespaces/x` is the namespace x and `/api/v1/namespaces` their list (kmock reads both wrong)."""
    match = _API_PATH.match(path)
    if match is None:
        return None
    group, version = ("", match["core"]) if match["core"] else (match["group"], match["version"])
    parts = [part for part in match["rest"].split("/") if part]
    namespace = None
    if len(parts) >= 3 and parts[0] == "namespaces" and parts[2] not in ("status", "finalize"):
        namespace, parts = parts[1], parts[2:]
    plural, name, subresource = [*parts, None, None, None][:3]
    if len(parts) > 3:
        subresource = "/".join(parts[2:])
    return Target(group, version, plural, namespace, name, subresource)


def respond(
    payload: Any, status: int = 200, content_type: str = JSON, warnings: list[str] | None = None
) -> rendering.Response:
    """Always name every header: kmock merges a reaction's headers across responses, so an absent one would leak."""
    warning = ", ".join('299 - "' + text.replace('"', '\\"') + '"' for text in warnings or []) or None
    return rendering.Response(
        status=status, payload=payload, headers={"Content-Type": content_type, "Warning": warning}
    )


@attrs.define(kw_only=True)
class Emulator(kmock.KubernetesScaffold):
    """A Kubernetes API server emulator on top of kmock's scaffold (errors, discovery, server, DSL)."""

    api: Api = attrs.field(init=False)
    # Exceptions the emulator itself raised (500s): a test fixture fails on them, so emulator bugs never hide.
    internal_errors: list[BaseException] = attrs.field(factory=list, init=False)
    address: str = attrs.field(default="127.0.0.1", init=False)
    stopping: bool = attrs.field(default=False, init=False)
    # Watch streams open now, by plural: a test knows an operator is listening when its watches are open.
    open_watches: collections.Counter[str] = attrs.field(factory=collections.Counter, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.api = Api(self.resources)
        self.fallback["get /openapi/v2"] << self._serve_openapi
        self.fallback["get /openapi/v3"] << self._serve_openapi
        self.fallback[lambda request: parse_path(request.url.path) is not None] << self._route

    @override
    async def __aenter__(self) -> Emulator:
        await super().__aenter__()
        if self.api.store.revision == 1:
            await self.api.bootstrap()
        return self

    # ---- requests in --------------------------------------------------------------------------------------------

    @override
    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        body = await raw_request.read()
        request = self._parse(raw_request, body)
        self._requests.append(request)
        try:
            return await self._handle(request)
        except rendering.StreamingError as error:  # the stream already started: too late for a status code
            self.internal_errors.append(error.__cause__ or error)
            response: aiohttp.web.StreamResponse = error.args[0]
            return response
        except errors.ApiError as error:
            return aiohttp.web.json_response(error.status_body(), status=error.status)
        except kmock.KubernetesNotFoundError:
            return aiohttp.web.json_response(errors.no_such_resource(raw_request.path).status_body(), status=404)
        except Exception as error:
            self.internal_errors.append(error)
            return await self._render_error(error)

    @override
    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        """kmock's own dispatch (highest priority first, the first reaction that sees the request serves it), except
        for how a reaction is found to see the request: kmock re-filters the whole request log for every reaction on
        every request, which is quadratic (1,000 ConfigMaps took 70 s). See `_sees`."""
        priorities = [payload.priorities for payload in self._payloads]
        width = max((len(priority) for priority in priorities), default=0)
        padded = [tuple(-p for p in priority) + (0,) * (width - len(priority)) for priority in priorities]
        for index in sorted(range(len(padded)), key=lambda i: padded[i]):
            payload = self._payloads[index]
            if self._sees(payload._source, request) and not payload._disabled.is_set():
                try:
                    return await payload(request)
                except rendering.ReactionMismatchError:  # either mismatch or depletion
                    payload._disabled.set()
                except NotImplementedError:  # matched, but non-actionable
                    pass
        raise NotImplementedError("no reaction matches the request")

    def _sees(self, view: dsl.View, request: rendering.Request) -> bool:
        """Whether `view` sees `request`, the newest request in this emulator's log. A chain of plain filters is
        decided on the request alone; slices, groups and exclusions depend on earlier requests: kmock decides."""
        while True:
            if view is self:
                return True
            if type(view) is dsl.Filter:
                if not view.criteria(request):
                    return False
            elif type(view) is not dsl.Priority:
                return request in view
            view = view._source

    @staticmethod
    def _parse(raw: aiohttp.web.BaseRequest, body: bytes) -> rendering.Request:
        """A kmock Request with the Kubernetes fields filled in right (kmock's own parser fails on namespaces)."""
        target = parse_path(raw.path)
        try:
            data = json.loads(body) if body else None
        except ValueError:
            data = None
        params = dict(raw.query)
        action: kmock.action | None = None
        if target is not None and target.plural is not None:
            if raw.method == "GET":
                watching = params.get("watch") in ("true", "1")
                action = kmock.action.WATCH if watching else kmock.action.FETCH if target.name else kmock.action.LIST
            else:
                action = {"POST": kmock.action.CREATE, "PATCH": kmock.action.UPDATE, "PUT": kmock.action.UPDATE,
                          "DELETE": kmock.action.DELETE}.get(raw.method)  # fmt: skip
        resource = None if target is None else kmock.resource(target.group, target.version, target.plural)
        return rendering.Request(
            method=raw.method,
            url=raw.url,
            params=params,
            headers=dict(raw.headers),
            cookies=dict(raw.cookies),
            body=body,
            text=body.decode("utf-8", "replace"),
            data=data,
            action=action,
            resource=resource,
            namespace=None if target is None else target.namespace,
            name=None if target is None else target.name,
            subresource=None if target is None else target.subresource,
            raw_request=raw,
        )

    # ---- discovery (kmock's scaffold routes these paths here) ---------------------------------------------------

    @override
    async def _serve_server_version(self, request: rendering.Request) -> rendering.Payload:
        return respond(discovery.KUBERNETES_VERSION)

    @override
    async def _serve_api(self, request: rendering.Request) -> rendering.Payload:
        return respond(discovery.api_versions(self.address))

    @override
    async def _serve_apis(self, request: rendering.Request) -> rendering.Payload:
        return respond(discovery.api_group_list(self.resources))

    @override
    async def _serve_group(self, request: rendering.Request) -> rendering.Payload:
        group = request.url.path.strip("/").split("/")[1]
        found = discovery.api_group(self.resources, group)
        if found is None:
            raise errors.no_such_resource(request.url.path)
        return respond(found)

    @override
    async def _serve_version(self, request: rendering.Request) -> rendering.Payload:
        target = parse_path(request.url.path)
        found = None if target is None else discovery.api_resource_list(self.resources, target.group, target.version)
        if found is None:
            raise errors.no_such_resource(request.url.path)
        return respond(found)

    async def _serve_openapi(self, request: rendering.Request) -> rendering.Payload:
        # No OpenAPI document: kubectl then validates nothing client-side and uses JSON merge patches (see README).
        raise errors.no_such_resource(request.url.path)

    # ---- resources ----------------------------------------------------------------------------------------------

    def _resource_type(self, request: rendering.Request) -> tuple[ResourceType, Target]:
        target = parse_path(request.url.path)
        if target is None or target.plural is None:
            raise errors.no_such_resource(request.url.path)
        rtype = self.api.resolve(target.group, target.version, target.plural)
        if rtype is None:
            raise errors.no_such_resource(request.url.path)
        if target.namespace is not None and not rtype.namespaced:
            raise errors.no_such_resource(request.url.path)
        if target.subresource is not None and target.subresource not in rtype.subresources:
            raise errors.no_such_resource(request.url.path)
        return rtype, target

    @staticmethod
    def _decode_body(request: rendering.Request, rtype: ResourceType) -> Any:
        media = request.headers.get("Content-Type", JSON).split(";")[0].strip().lower()
        if media in ("", JSON):
            try:
                return json.loads(request.body)
            except ValueError as error:
                raise errors.bad_request(f"the request body is not JSON: {error}") from error
        if media in ("application/yaml", "application/x-yaml", "text/yaml"):
            try:
                return yaml.safe_load(request.body)
            except yaml.YAMLError as error:
                raise errors.bad_request(f"the request body is not YAML: {error}") from error
        if media == protobuf.MEDIA_TYPE:
            return protobuf.decode(request.body, rtype)
        raise errors.unsupported_media_type(media, [JSON, "application/yaml", protobuf.MEDIA_TYPE])

    async def _route(self, request: rendering.Request) -> rendering.Payload:
        rtype, target = self._resource_type(request)
        if request.method == "GET":
            return self._read(request, rtype, target)
        return await self._change(request, rtype, target)

    def _read(self, request: rendering.Request, rtype: ResourceType, target: Target) -> rendering.Response:
        """GET: one object, a list, or a watch; as JSON, or as a Table when kubectl asks for one."""
        params = request.params
        include = params.get("includeObject", "")
        as_table = tables.wants_table(request.headers.get("Accept", JSON))
        media = tables.TABLE_MEDIA_TYPE if as_table else JSON

        def render(obj: dict[str, Any]) -> dict[str, Any]:
            return tables.table(rtype, [obj], obj["metadata"]["resourceVersion"], include) if as_table else obj

        if params.get("watch") in ("true", "1"):
            watcher = watch.WatchRequest(rtype, target.namespace, target.name, params)
            wanted = lambda: not self.stopping  # noqa: E731 - a flag read by the stream on each poll
            return respond(watch.stream(self.api.store, watcher, wanted, self.open_watches, render), content_type=media)
        if target.name is not None:
            return respond(render(self.api.get(rtype, target.namespace, target.name)), content_type=media)
        listed = self.api.list_objects(rtype, target.namespace, params)
        if as_table:
            revision = listed["metadata"]["resourceVersion"]
            return respond(tables.table(rtype, listed["items"], revision, include), content_type=media)
        return respond(listed)

    async def _change(self, request: rendering.Request, rtype: ResourceType, target: Target) -> rendering.Response:
        """POST, PUT, PATCH, DELETE, with dryRun and fieldValidation."""
        params = request.params
        if params.get("dryRun", "All") != "All":
            raise errors.bad_request(f'unsupported dry run mode: {params["dryRun"]!r}, only "All" is supported')
        dry_run = "dryRun" in params
        validation = params.get("fieldValidation", "Warn")
        namespace, name, subresource = target.namespace, target.name, target.subresource
        match request.method, name:
            case "POST", None:
                body = self._decode_body(request, rtype)
                made, warnings = await self.api.create(
                    rtype, namespace, body, dry_run=dry_run, field_validation=validation
                )
                return respond(made, 201, warnings=warnings)
            case "PUT", str():
                body = self._decode_body(request, rtype)
                replaced, warnings = await self.api.replace(
                    rtype, namespace, name, body, subresource=subresource, dry_run=dry_run, field_validation=validation
                )
                return respond(replaced, warnings=warnings)
            case "PATCH", str():
                patched, warnings, created = await self.api.patch(
                    rtype, namespace, name, request.headers.get("Content-Type", ""), request.body,
                    subresource=subresource, dry_run=dry_run, field_validation=validation,
                    field_manager=params.get("fieldManager"),
                )  # fmt: skip
                return respond(patched, 201 if created else 200, warnings=warnings)
            case "DELETE", str():
                options = dict(request.data) if isinstance(request.data, dict) else {}
                if "propagationPolicy" in params:
                    options["propagationPolicy"] = params["propagationPolicy"]
                deleted = await self.api.delete(rtype, namespace, name, options, dry_run=dry_run)
                pending = not dry_run and self.api.store.get(rtype, namespace, name) is not None  # finalizers
                return respond(deleted, 202 if pending else 200)
            case "DELETE", None:
                for obj in self.api.list_objects(rtype, namespace, params)["items"]:
                    meta = obj["metadata"]
                    await self.api.delete(rtype, meta.get("namespace"), meta["name"], {}, dry_run=dry_run)
                return respond({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Success"})
        raise errors.method_not_allowed(str(request.method.value))
