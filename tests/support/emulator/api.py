"""The verbs on objects — create, replace, patch, delete, get, list — with the API server's bookkeeping.

This layer knows nothing about HTTP: the server module parses requests into these calls and renders the results.
"""

from __future__ import annotations

import copy
import json
import re
import secrets
import uuid
from collections.abc import Mapping
from typing import Any

import kmock
import yaml

from tests.support.emulator import builtins, controllers, errors, patching, validation
from tests.support.emulator.errors import FieldError
from tests.support.emulator.resources import BUILTINS, CRD_TYPE, NAMESPACE_TYPE, ResourceType
from tests.support.emulator.selectors import field_selector, label_selector
from tests.support.emulator.store import Store, now

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SERVER_OWNED_META = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation")
INITIAL_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


def _desired_state(obj: Mapping[str, Any]) -> dict[str, Any]:
    """What bumps metadata.generation: everything but metadata and status."""
    return {key: value for key, value in obj.items() if key not in ("metadata", "status", "apiVersion", "kind")}


class Api:
    """The served resource types (kept in kmock's discovery registry too) and the verbs on their objects."""

    def __init__(self, registry: kmock.ResourcesArray) -> None:
        self.store = Store()
        self.registry = registry
        self.types: dict[tuple[str, str, str], ResourceType] = {}
        for rtype in BUILTINS:
            self.serve(rtype)

    # ---- the served types ----------------------------------------------------------------------------------------

    def serve(self, rtype: ResourceType) -> None:
        self.types[(rtype.group, rtype.version, rtype.plural)] = rtype
        self.registry[rtype.key] = rtype.info()

    def unserve(self, rtype: ResourceType) -> None:
        self.types.pop((rtype.group, rtype.version, rtype.plural), None)
        if rtype.key in self.registry:
            del self.registry[rtype.key]

    def resolve(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self.types.get((group, version, plural))

    async def bootstrap(self) -> None:
        for name in INITIAL_NAMESPACES:
            await self.create(NAMESPACE_TYPE, None, {"metadata": {"name": name}})

    # ---- reads ---------------------------------------------------------------------------------------------------

    def get(self, rtype: ResourceType, namespace: str | None, name: str) -> dict[str, Any]:
        found = self.store.get(rtype, namespace, name)
        if found is None:
            raise errors.not_found(rtype, name)
        return found

    def list_objects(self, rtype: ResourceType, namespace: str | None, params: Mapping[str, str]) -> dict[str, Any]:
        by_label = label_selector(params.get("labelSelector"))
        by_field = field_selector(params.get("fieldSelector"), rtype.kind)
        items = [obj for obj in self.store.objects_of(rtype, namespace) if by_label(obj) and by_field(obj)]
        return {
            "apiVersion": rtype.api_version,
            "kind": f"{rtype.kind}List",
            "metadata": {"resourceVersion": str(self.store.revision)},
            "items": items,
        }

    # ---- writes --------------------------------------------------------------------------------------------------

    async def create(
        self,
        rtype: ResourceType,
        namespace: str | None,
        body: Any,
        *,
        dry_run: bool = False,
        field_validation: str = "Warn",
    ) -> tuple[dict[str, Any], list[str]]:
        obj = self._checked_body(rtype, body)
        meta = obj["metadata"]
        self._place(rtype, namespace, meta)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + "".join(
                secrets.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5)
            )
        self._check_name(rtype, meta.get("name"))
        if rtype.namespaced:
            self._check_namespace(meta["namespace"])
        if self.store.get(rtype, meta.get("namespace"), meta["name"]) is not None:
            raise errors.already_exists(rtype, meta["name"])
        if "status" in rtype.subresources:
            obj.pop("status", None)  # the main resource ignores status; only /status writes it
        for key in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink", "managedFields"):
            meta.pop(key, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now()
        if rtype.tracks_generation:
            meta["generation"] = 1
        warnings = self._admit(rtype, obj, field_validation, creating=True)
        if dry_run:
            return obj, warnings
        saved = await self.store.save(rtype, obj, None)
        if rtype == CRD_TYPE:
            saved = await self._establish(saved)
        return saved, warnings

    async def replace(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        body: Any,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
        field_validation: str = "Warn",
    ) -> tuple[dict[str, Any], list[str]]:
        incoming = self._checked_body(rtype, body)
        current = self.get(rtype, namespace, name)
        if incoming["metadata"].get("name", name) != name:
            raise errors.bad_request(
                f"the name of the object ({incoming['metadata']['name']}) does not match the name on the URL ({name})"
            )
        version = incoming["metadata"].get("resourceVersion")
        if version and version != current["metadata"]["resourceVersion"]:
            raise errors.stale(rtype, name)
        if not version and rtype.custom:
            error = FieldError(
                "metadata.resourceVersion", "FieldValueInvalid", "Invalid value: 0x0: must be specified for an update"
            )
            raise errors.invalid(rtype, name, [error])
        return await self._write(
            rtype, current, self._compose(rtype, current, incoming, subresource), dry_run, field_validation
        )

    async def patch(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        content_type: str,
        body: bytes,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
        field_validation: str = "Warn",
        field_manager: str | None = None,
    ) -> tuple[dict[str, Any], list[str], bool]:
        """Returns the object, the warnings, and whether it was created (server-side apply can create)."""
        media = content_type.split(";")[0].strip().lower()
        if media == patching.APPLY:
            return await self._apply(
                rtype, namespace, name, body, subresource, dry_run, field_validation, field_manager
            )
        accepted = [patching.JSON_PATCH, patching.MERGE, patching.APPLY] + (
            [] if rtype.custom else [patching.STRATEGIC]
        )
        if media not in accepted:
            # Strategic merge is refused for custom resources, as the real server does (415).
            raise errors.unsupported_media_type(media, accepted)
        document = self._decode_json(body)
        current = self.get(rtype, namespace, name)
        if media == patching.JSON_PATCH:
            patched = patching.json_patch(current, document)
        elif not isinstance(document, dict):
            raise errors.bad_request("the patch must be a JSON object")
        elif media == patching.MERGE:
            patched = patching.merge_patch(current, document)
        else:
            patched = patching.strategic_merge_patch(current, document)
        patched.setdefault("metadata", {})
        version = patched["metadata"].get("resourceVersion")
        if version and version != current["metadata"]["resourceVersion"]:
            raise errors.stale(rtype, name)
        new = self._compose(rtype, current, patched, subresource)
        saved, warnings = await self._write(rtype, current, new, dry_run, field_validation)
        return saved, warnings, False

    async def _apply(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        body: bytes,
        subresource: str | None,
        dry_run: bool,
        field_validation: str,
        field_manager: str | None,
    ) -> tuple[dict[str, Any], list[str], bool]:
        if not field_manager:
            raise errors.bad_request("PATCH /apply requires a fieldManager query parameter")
        try:
            applied = yaml.safe_load(body)
        except yaml.YAMLError as error:
            raise errors.bad_request(f"error decoding YAML: {error}") from error
        if not isinstance(applied, dict) or not applied.get("apiVersion") or not applied.get("kind"):
            raise errors.bad_request("an apply patch must be an object with apiVersion and kind")
        current = self.store.get(rtype, namespace, name)
        if current is None:
            if subresource:
                raise errors.not_found(rtype, name)
            applied.setdefault("metadata", {})["name"] = name
            created, warnings = await self.create(
                rtype, namespace, applied, dry_run=dry_run, field_validation=field_validation
            )
            return created, warnings, True
        merged = patching.apply_merge(current, applied)
        saved, warnings = await self._write(
            rtype, current, self._compose(rtype, current, merged, subresource), dry_run, field_validation
        )
        return saved, warnings, False

    async def delete(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        options: Mapping[str, Any],
        *,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        current = self.get(rtype, namespace, name)
        meta = current["metadata"]
        preconditions = options.get("preconditions") or {}
        if preconditions.get("uid") and preconditions["uid"] != meta["uid"]:
            why = f"Precondition failed: UID in precondition: {preconditions['uid']}, UID in object meta: {meta['uid']}"
            raise errors.conflict(rtype, name, why)
        if preconditions.get("resourceVersion") and preconditions["resourceVersion"] != meta["resourceVersion"]:
            raise errors.stale(rtype, name)
        if dry_run:
            return current
        policy = options.get("propagationPolicy") or ("Orphan" if options.get("orphanDependents") else "Background")
        if meta.get("finalizers"):
            if meta.get("deletionTimestamp"):
                return current
            marked = copy.deepcopy(current)
            marked["metadata"]["deletionTimestamp"] = now()
            marked["metadata"]["deletionGracePeriodSeconds"] = 0
            return await self.store.save(rtype, marked, current)
        final = await self.store.remove(rtype, current)
        await self._after_removal(rtype, final, policy)
        return final

    # ---- helpers -------------------------------------------------------------------------------------------------

    @staticmethod
    def _decode_json(body: bytes) -> Any:
        if not body.strip():
            return {}
        try:
            return json.loads(body)
        except ValueError:
            pass  # not JSON: a YAML patch, which the emulator accepts too (the YAML parser is ~20x slower on JSON)
        try:
            return yaml.safe_load(body)
        except yaml.YAMLError as error:
            raise errors.bad_request(f"error decoding patch: {error}") from error

    @staticmethod
    def _checked_body(rtype: ResourceType, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise errors.bad_request(f"the body of the request must be a {rtype.kind} object")
        obj = copy.deepcopy(body)
        if obj.get("kind", rtype.kind) != rtype.kind or obj.get("apiVersion", rtype.api_version) != rtype.api_version:
            raise errors.bad_request(
                f"the API version in the data ({obj.get('apiVersion')}) does not match the expected API version "
                f"({rtype.api_version}) or the kind ({obj.get('kind')}) is not {rtype.kind}"
            )
        obj["apiVersion"], obj["kind"] = rtype.api_version, rtype.kind
        if not isinstance(obj.setdefault("metadata", {}), dict):
            raise errors.bad_request("metadata must be an object")
        return obj

    @staticmethod
    def _place(rtype: ResourceType, namespace: str | None, meta: dict[str, Any]) -> None:
        if not rtype.namespaced:
            meta.pop("namespace", None)
            return
        if namespace is None:
            raise errors.method_not_allowed("POST on a namespaced resource needs a namespace in the URL")
        if meta.get("namespace", namespace) != namespace:
            raise errors.bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        meta["namespace"] = namespace

    @staticmethod
    def _check_name(rtype: ResourceType, name: Any) -> None:
        if not name:
            raise errors.invalid(
                rtype,
                "",
                [FieldError("metadata.name", "FieldValueRequired", "Required value: name or generateName is required")],
            )
        pattern, limit = (_DNS_LABEL, 63) if rtype == NAMESPACE_TYPE else (_DNS_SUBDOMAIN, 253)
        if not isinstance(name, str) or len(name) > limit or not pattern.match(name):
            detail = (
                f"Invalid value: {json.dumps(name)}: a lowercase RFC 1123 name must consist of lower case "
                "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
            )
            raise errors.invalid(rtype, str(name), [FieldError("metadata.name", "FieldValueInvalid", detail)])

    def _check_namespace(self, namespace: str) -> None:
        found = self.store.get(NAMESPACE_TYPE, None, namespace)
        if found is None:
            raise errors.namespace_not_found(namespace)
        if found["metadata"].get("deletionTimestamp"):
            raise errors.ApiError(403, "Forbidden", f"namespace {namespace} is being terminated", {})

    @staticmethod
    def _compose(
        rtype: ResourceType, current: dict[str, Any], incoming: dict[str, Any], subresource: str | None
    ) -> dict[str, Any]:
        """Keep the main resource and `status` apart: each write changes only its own part."""
        if subresource == "status":
            new = copy.deepcopy(current)
            if "status" in incoming:
                new["status"] = copy.deepcopy(incoming["status"])
            else:
                new.pop("status", None)
            return new
        if subresource:
            raise errors.no_such_resource(f"{rtype.plural}/{subresource}")
        new = copy.deepcopy(incoming)
        if "status" in rtype.subresources:
            if "status" in current:
                new["status"] = copy.deepcopy(current["status"])
            else:
                new.pop("status", None)
        return new

    async def _write(
        self, rtype: ResourceType, current: dict[str, Any], new: dict[str, Any], dry_run: bool, field_validation: str
    ) -> tuple[dict[str, Any], list[str]]:
        meta = new.setdefault("metadata", {})
        old_meta = current["metadata"]
        for key in (*_SERVER_OWNED_META, "name", "namespace"):
            if key in old_meta:
                meta[key] = old_meta[key]
            else:
                meta.pop(key, None)
        meta["resourceVersion"] = old_meta["resourceVersion"]
        new["apiVersion"], new["kind"] = rtype.api_version, rtype.kind
        warnings = self._admit(rtype, new, field_validation, creating=False)
        if rtype.tracks_generation and _desired_state(new) != _desired_state(current):
            meta["generation"] = int(old_meta.get("generation", 1)) + 1
        if new == current or dry_run:
            return new, warnings  # an unchanged object is not written: no new resourceVersion, no event
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            final = await self.store.remove(rtype, new)
            await self._after_removal(rtype, final, "Background")
            return final, warnings
        saved = await self.store.save(rtype, new, current)
        if rtype == CRD_TYPE:
            saved = await self._establish(saved)
        return saved, warnings

    def _admit(self, rtype: ResourceType, obj: dict[str, Any], field_validation: str, *, creating: bool) -> list[str]:
        """Defaulting, pruning and schema validation (custom resources); the built-ins' few server-side fills."""
        if rtype.schema is None:
            builtins.prepare(rtype.plural, rtype.group, obj, creating=creating)
            if rtype == CRD_TYPE:
                controllers.check_crd(obj)
            return []
        dropped = validation.prune(obj, rtype.schema)
        if dropped and field_validation == "Strict":
            raise errors.bad_request(
                "strict decoding error: " + ", ".join(f'unknown field "{path}"' for path in dropped)
            )
        validation.apply_defaults(obj, rtype.schema)
        problems = validation.validate(obj, rtype.schema)
        if problems:
            raise errors.invalid(rtype, obj["metadata"].get("name", ""), problems)
        return [] if field_validation == "Ignore" else [f'unknown field "{path}"' for path in dropped]

    async def _establish(self, crd: dict[str, Any]) -> dict[str, Any]:
        return await controllers.establish(self, crd)

    async def _after_removal(self, rtype: ResourceType, removed: dict[str, Any], policy: str) -> None:
        await controllers.after_removal(self, rtype, removed, policy)
