"""A feature group as the runtime sees it, and the checks every record must pass.

The control plane stores a feature group as its Describe output; this module
turns that into a :class:`Group` (parsed once, cached by the runtime) and
checks records against it the way the Feature Store runtime does: every
feature defined, values of the declared type and collection type, the record
identifier present, the event time in one of its two formats.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ...server.errors import AWSError

RESERVED_NAMES = ("is_deleted", "write_time", "api_invocation_time")
TTL_SECONDS = {"Seconds": 1, "Minutes": 60, "Hours": 3600, "Days": 86400, "Weeks": 604800}
INT64 = (-(2**63), 2**63 - 1)
# The event time range AWS accepts: 0000-01-01T00:00:00Z to 9999-12-31T23:59:59.999Z.
EVENT_TIME_RANGE = (-62167219200.0, 253402300799.999)
_ISO_EVENT_TIME = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d{3})?Z$")
_INTEGRAL = re.compile(r"^[+-]?\d+$")
_FRACTIONAL = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
MAX_RECORD_BYTES = 350 * 1024


def validation_error(message: str) -> AWSError:
    """The runtime's own spelling of a bad request (the control plane says ValidationException)."""
    return AWSError("ValidationError", message)


@dataclass(frozen=True)
class Feature:
    name: str
    type: str  # Integral | Fractional | String
    collection: str | None = None  # List | Set | Vector
    dimension: int | None = None  # Vector only


@dataclass
class Group:
    """One incarnation of a feature group: ``key`` changes if it is deleted and created again."""

    key: str
    name: str
    arn: str
    account_id: str
    region: str
    status: str
    created: float
    record_id_name: str
    event_time_name: str
    features: dict[str, Feature]  # in definition order
    online: bool
    offline: bool
    ttl_seconds: float | None
    offline_uri: str | None = None  # ResolvedOutputS3Uri
    table_format: str = "Glue"
    lowered: dict[str, str] = field(default_factory=dict)  # lower-cased name -> name

    @property
    def event_time_type(self) -> str:
        return self.features[self.event_time_name].type

    @classmethod
    def from_data(cls, account_id: str, region: str, data: dict, status: str | None = None) -> Group:
        online = data.get("OnlineStoreConfig") or {}
        offline = data.get("OfflineStoreConfig") or {}
        features = {}
        for d in data["FeatureDefinitions"]:
            vector = (d.get("CollectionConfig") or {}).get("VectorConfig") or {}
            features[d["FeatureName"]] = Feature(
                d["FeatureName"], d["FeatureType"], d.get("CollectionType"), vector.get("Dimension")
            )
        return cls(
            key=group_key(account_id, region, data["FeatureGroupName"], data["CreationTime"]),
            name=data["FeatureGroupName"],
            arn=data["FeatureGroupArn"],
            account_id=account_id,
            region=region,
            status=status or data.get("FeatureGroupStatus", "Created"),
            created=data["CreationTime"],
            record_id_name=data["RecordIdentifierFeatureName"],
            event_time_name=data["EventTimeFeatureName"],
            features=features,
            online=bool(online.get("EnableOnlineStore")),
            offline=bool(offline),
            ttl_seconds=ttl_seconds(online.get("TtlDuration")),
            offline_uri=(offline.get("S3StorageConfig") or {}).get("ResolvedOutputS3Uri"),
            table_format=offline.get("TableFormat") or "Glue",
            lowered={name.lower(): name for name in features},
        )

    # -- checking records ------------------------------------------------------

    def parse_record(self, record: list[dict]) -> ParsedRecord:
        """Check a PutRecord ``Record`` against the definitions; the typed values on success."""
        values: dict = {}
        for item in record:
            name = item["FeatureName"]
            feature = self.features.get(name)
            if feature is None:
                raise validation_error(
                    f"The feature {name} is not defined in feature group {self.name}. "
                    f"Add it with UpdateFeatureGroup FeatureAdditions before writing it."
                )
            if name in values:
                raise validation_error(f"The record contains the feature {name} more than once.")
            values[name] = parse_value(feature, item)
        record_id = values.get(self.record_id_name)
        if record_id is None or record_id == "":
            raise validation_error(
                f"The record identifier feature {self.record_id_name} must be present and not empty."
            )
        if self.event_time_name not in values:
            raise validation_error(f"The event time feature {self.event_time_name} must be present.")
        event_time = parse_event_time(self.features[self.event_time_name], record_value(record, self.event_time_name))
        return ParsedRecord(record_id=str(record_id), event_time=event_time, values=values)

    def record_key(self, text: str) -> str:
        """How the online store keys a record identifier (Integral ids in canonical form: "007" is 7)."""
        feature = self.features[self.record_id_name]
        return str(parse_scalar(feature, text)) if feature.type == "Integral" else text

    def check_feature_names(self, names: list[str] | None) -> None:
        for name in names or ():
            if name not in self.features:
                raise validation_error(f"The feature {name} is not defined in feature group {self.name}.")

    def target_stores(self, requested: list[str] | None) -> tuple[bool, bool]:
        """(online, offline) for a write, from TargetStores or the group's stores."""
        if not requested:
            return self.online, self.offline
        if "OnlineStore" in requested and not self.online:
            raise validation_error(f"The online store is not enabled for feature group {self.name}.")
        if "OfflineStore" in requested and not self.offline:
            raise validation_error(f"The offline store is not enabled for feature group {self.name}.")
        return "OnlineStore" in requested, "OfflineStore" in requested


@dataclass
class ParsedRecord:
    record_id: str
    event_time: float  # epoch seconds, for ordering, TTL and partitioning
    values: dict  # feature name -> typed value (int, float, str, or a list of those)


def group_key(account_id: str, region: str, name: str, created: float) -> str:
    """Identifies one incarnation of a group in the online store and the offline journal."""
    return f"{account_id}:{region}:{name.lower()}:{round(created * 1000)}"


def parse_group_key(key: str) -> tuple[str, str, str, float]:
    account_id, region, name, created_ms = key.split(":")
    return account_id, region, name, int(created_ms) / 1000


def ttl_seconds(ttl: dict | None) -> float | None:
    if not ttl or "Unit" not in ttl or "Value" not in ttl:
        return None
    return float(ttl["Value"] * TTL_SECONDS[ttl["Unit"]])


def record_value(record: list[dict], name: str):
    for item in record:
        if item["FeatureName"] == name:
            return item.get("ValueAsString")
    return None


def parse_value(feature: Feature, item: dict):
    """A FeatureValue's value, typed; ValidationError if it does not fit the definition."""
    name = feature.name
    has_scalar, has_list = "ValueAsString" in item, "ValueAsStringList" in item
    if has_scalar and has_list:
        raise validation_error(f"Feature {name}: set ValueAsString or ValueAsStringList, not both.")
    if feature.collection is None:
        if not has_scalar:
            raise validation_error(
                f"Feature {name} is a scalar feature of type {feature.type}: its value must be given as ValueAsString."
            )
        return parse_scalar(feature, item["ValueAsString"])
    if not has_list:
        raise validation_error(
            f"Feature {name} is a {feature.collection} feature: its value must be given as ValueAsStringList."
        )
    values = [parse_scalar(feature, v) for v in item["ValueAsStringList"]]
    if feature.collection == "Set" and len(set(values)) != len(values):
        raise validation_error(f"Feature {name} is a Set: its values must be unique.")
    if feature.collection == "Vector" and len(values) != feature.dimension:
        raise validation_error(
            f"Feature {name} is a Vector of dimension {feature.dimension}, but {len(values)} values were given."
        )
    return values


def parse_scalar(feature: Feature, text: str):
    if feature.type == "String":
        return text
    if feature.type == "Integral":
        if _INTEGRAL.match(text):
            value = int(text)
            if INT64[0] <= value <= INT64[1]:
                return value
        raise validation_error(
            f"Feature {feature.name} is Integral (a signed 64-bit integer); {text[:64]!r} is not one."
        )
    if _FRACTIONAL.match(text):
        value = float(text)
        if math.isfinite(value):
            return value
    raise validation_error(
        f"Feature {feature.name} is Fractional (a finite IEEE-754 double); {text[:64]!r} is not one."
    )


def parse_event_time(feature: Feature, text: str | None) -> float:
    """Epoch seconds of an event time: Fractional seconds, or ISO-8601 UTC for a String feature."""
    if text is None:
        raise validation_error(f"The event time feature {feature.name} must be given as ValueAsString.")
    if feature.type == "Fractional":
        value = parse_scalar(feature, text)
        if not EVENT_TIME_RANGE[0] <= value <= EVENT_TIME_RANGE[1]:
            raise validation_error(
                f"Event time {text} is outside the supported range (0000-01-01T00:00:00Z to 9999-12-31T23:59:59.999Z)."
            )
        return round(value, 3)
    match = _ISO_EVENT_TIME.match(text)
    if match:
        try:
            moment = datetime(*(int(g) for g in match.groups()[:6]), tzinfo=UTC)
        except ValueError:
            moment = None
        if moment is not None:
            millis = int(match.group(7)[1:]) / 1000 if match.group(7) else 0.0
            return round(moment.timestamp() + millis, 3)
    raise validation_error(
        f"Event time {text[:64]!r} of feature {feature.name} is not in a supported format: "
        "yyyy-MM-dd'T'HH:mm:ssZ or yyyy-MM-dd'T'HH:mm:ss.SSSZ (UTC)."
    )


def iso_time(epoch: float) -> str:
    """How the runtime spells a time (ExpiresAt): ISO-8601 UTC with milliseconds."""
    moment = datetime.fromtimestamp(epoch, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
