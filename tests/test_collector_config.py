"""The shipped collector configurations: otelcol-contrib wiring and the rotel env file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from run_identity.core.attributes import MANIFEST_EVENT_NAME, RECEIPT_EVENT_NAME
from run_identity.pipeline.collector import PACKAGE_CONFIG_DIR, CollectorError, default_config_dir, load_env_file

CONFIG_DIR = Path(__file__).resolve().parent.parent / "src" / "run_identity" / "collector_config"
OTELCOL = CONFIG_DIR / "otelcol-contrib.yaml"


@pytest.fixture(scope="module")
def otelcol() -> dict[str, Any]:
    doc = yaml.safe_load(OTELCOL.read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


def _kind(name: str) -> str:
    """The component type of ``type/name`` (``file/traces`` -> ``file``)."""
    return name.split("/", 1)[0]


def _signal(pipeline: str) -> str:
    return pipeline.split("/", 1)[0]


def test_every_pipeline_component_is_defined(otelcol: dict[str, Any]) -> None:
    """Each receiver, processor, exporter and connector a pipeline names is defined at the top level."""
    pipelines = otelcol["service"]["pipelines"]
    defined = {
        section: set(otelcol.get(section) or {})
        for section in ("receivers", "processors", "exporters", "connectors")
    }
    connectors = defined["connectors"]
    for name, pipeline in pipelines.items():
        assert _signal(name) in {"traces", "metrics", "logs"}, name
        assert pipeline.get("receivers"), f"{name} has no receiver"
        assert pipeline.get("exporters"), f"{name} has no exporter"
        for receiver in pipeline["receivers"]:
            assert receiver in defined["receivers"] | connectors, f"{name}: receiver {receiver} undefined"
        for processor in pipeline.get("processors", []):
            assert processor in defined["processors"], f"{name}: processor {processor} undefined"
        for exporter in pipeline["exporters"]:
            assert exporter in defined["exporters"] | connectors, f"{name}: exporter {exporter} undefined"


def test_every_defined_component_is_used(otelcol: dict[str, Any]) -> None:
    """No receiver, processor, exporter or connector is defined but left out of every pipeline."""
    used: set[str] = set()
    for pipeline in otelcol["service"]["pipelines"].values():
        for key in ("receivers", "processors", "exporters"):
            used.update(pipeline.get(key, []))
    for section in ("receivers", "processors", "exporters", "connectors"):
        for name in otelcol.get(section) or {}:
            assert name in used, f"{section}.{name} is defined but unused"


def test_routing_connector_is_exporter_of_one_pipeline_and_receiver_of_the_routes(
    otelcol: dict[str, Any],
) -> None:
    """The routing connector leaves exactly one logs pipeline and feeds every route it names."""
    pipelines = otelcol["service"]["pipelines"]
    routing = otelcol["connectors"]["routing"]
    exporting = [n for n, p in pipelines.items() if "routing" in p.get("exporters", [])]
    receiving = {n for n, p in pipelines.items() if "routing" in p.get("receivers", [])}
    assert len(exporting) == 1 and _signal(exporting[0]) == "logs"
    assert exporting[0] not in receiving
    routes = {p for row in routing["table"] for p in row["pipelines"]} | set(routing["default_pipelines"])
    assert routes == receiving
    assert all(_signal(r) == "logs" for r in routes)


def test_routing_condition_names_the_manifest_event(otelcol: dict[str, Any]) -> None:
    """The one routing rule is an OTTL log-context condition on the manifest and receipt event names."""
    (rule,) = otelcol["connectors"]["routing"]["table"]
    assert rule["context"] == "log"
    assert rule["condition"] == f'event_name == "{MANIFEST_EVENT_NAME}" or event_name == "{RECEIPT_EVENT_NAME}"'
    (manifests_pipeline,) = rule["pipelines"]
    default = otelcol["connectors"]["routing"]["default_pipelines"]
    assert manifests_pipeline not in default


def _routes(otelcol: dict[str, Any]) -> dict[str, list[str]]:
    """The exporters at the end of the traces, manifests and default-logs routes."""
    pipelines = otelcol["service"]["pipelines"]
    (rule,) = otelcol["connectors"]["routing"]["table"]
    return {
        "traces": pipelines["traces"]["exporters"],
        "manifests": pipelines[rule["pipelines"][0]]["exporters"],
        "logs": pipelines[otelcol["connectors"]["routing"]["default_pipelines"][0]]["exporters"],
    }


def test_traces_and_manifests_go_to_their_own_durable_exporters(otelcol: dict[str, Any]) -> None:
    """Traces and manifests each end in their own OTLP/HTTP exporter whose sending queue is persistent
    (a file_storage extension the service starts, fsync on) and whose retries never stop; other logs end
    in a file exporter that appends."""
    routes = _routes(otelcol)
    storages = set()
    for route in ("traces", "manifests"):
        (exporter,) = routes[route]
        assert _kind(exporter) == "otlphttp", route
        settings = otelcol["exporters"][exporter]
        queue, retry = settings["sending_queue"], settings["retry_on_failure"]
        assert queue.get("enabled", True) and queue["storage"] in otelcol["service"]["extensions"], route
        assert _kind(queue["storage"]) == "file_storage"
        assert otelcol["extensions"][queue["storage"]]["fsync"] is True
        assert retry.get("enabled", True) and retry["max_elapsed_time"] == 0, route
        assert settings.get("compression") in (None, "none", "gzip")  # what run-identity serve reads
        storages.add(queue["storage"])
    assert routes["traces"] != routes["manifests"]
    (logs,) = routes["logs"]
    assert _kind(logs) == "file" and otelcol["exporters"][logs]["append"] is True
    assert set(otelcol["extensions"]) == storages


def test_no_batch_processor_before_a_persistent_queue(otelcol: dict[str, Any]) -> None:
    """The batch processor answers the receiver before the data reaches the queue (and holds it in memory):
    none on the pipelines that lead to the traces or manifests exporters."""
    pipelines = otelcol["service"]["pipelines"]
    (rule,) = otelcol["connectors"]["routing"]["table"]
    for name in ("traces", "logs/in", rule["pipelines"][0]):
        assert not [p for p in pipelines[name].get("processors", []) if _kind(p) == "batch"], name


def test_receivers_listen_on_loopback_only(otelcol: dict[str, Any]) -> None:
    """The OTLP receivers bind 127.0.0.1 for both gRPC and HTTP."""
    protocols = otelcol["receivers"]["otlp"]["protocols"]
    assert set(protocols) == {"grpc", "http"}
    for proto in protocols.values():
        assert proto["endpoint"].startswith("127.0.0.1:")


def test_config_states_minimum_collector_version() -> None:
    """The YAML's comments name the minimum otelcol-contrib version the event_name condition needs."""
    text = OTELCOL.read_text(encoding="utf-8")
    assert "Minimum version: otelcol-contrib v0.128.0" in text


def test_rotel_env_routes_traces_and_manifests_to_separate_exporters() -> None:
    """rotel.env defines two OTLP exporters, one per signal, and the manifest router on logs."""
    env = load_env_file(CONFIG_DIR / "rotel.env")
    exporters = dict(item.split(":", 1) for item in env["ROTEL_EXPORTERS"].split(","))
    assert exporters == {"traces": "otlp", "manifests": "otlp"}
    assert env["ROTEL_EXPORTERS_TRACES"] == "traces"
    assert env["ROTEL_EXPORTERS_LOGS"] == "manifests"
    assert (CONFIG_DIR / env["ROTEL_OTLP_WITH_LOGS_PROCESSOR"]).is_file()
    for key in ("ROTEL_OTLP_GRPC_ENDPOINT", "ROTEL_OTLP_HTTP_ENDPOINT"):
        assert env[key].startswith("127.0.0.1:")


def test_rotel_router_keeps_only_manifests() -> None:
    """The rotel logs processor keeps manifest and receipt records in order and drops the rest, unedited."""
    namespace: dict[str, Any] = {}
    source = CONFIG_DIR / "rotel_manifest_router.py"
    exec(compile(source.read_text(encoding="utf-8"), str(source), "exec"), namespace)

    class Record:
        def __init__(self, event_name: str, body: str) -> None:
            self.event_name = event_name
            self.body = body

    class Scope:
        def __init__(self, records: list[Record]) -> None:
            self.log_records = records

    class Resource:
        def __init__(self, scopes: list[Scope]) -> None:
            self.scope_logs = scopes

    a, b = Record(MANIFEST_EVENT_NAME, "a"), Record(RECEIPT_EVENT_NAME, "b")
    scopes = [Scope([Record("", "x"), a, Record("other", "y"), b]), Scope([Record("", "z")])]
    namespace["process_logs"](Resource(scopes))
    assert scopes[0].log_records == [a, b]
    assert scopes[1].log_records == []
    assert (a.body, b.body) == ("a", "b")


def test_env_file_rejects_a_line_without_equals(tmp_path: Path) -> None:
    """A malformed env file line is reported with its file and line number."""
    bad = tmp_path / "rotel.env"
    bad.write_text("# fine\nROTEL_X=1\nnot a setting\n", encoding="utf-8")
    with pytest.raises(CollectorError, match=r"rotel.env:3"):
        load_env_file(bad)


def test_default_config_dir_is_the_package_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without an override the launcher uses the configuration shipped inside the package."""
    monkeypatch.delenv("RUN_IDENTITY_COLLECTOR_CONFIG", raising=False)
    assert default_config_dir() == PACKAGE_CONFIG_DIR.resolve() == CONFIG_DIR


def test_default_config_dir_ignores_the_current_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A collector-config folder in the current directory is never picked up (rotel would load its Python)."""
    monkeypatch.delenv("RUN_IDENTITY_COLLECTOR_CONFIG", raising=False)
    for name in ("collector-config", "collector_config"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "rotel.env").write_text("ROTEL_X=1\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert default_config_dir() == CONFIG_DIR


def test_default_config_dir_takes_an_explicit_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """RUN_IDENTITY_COLLECTOR_CONFIG names the folder; one without rotel.env is an error naming the variable."""
    monkeypatch.setenv("RUN_IDENTITY_COLLECTOR_CONFIG", str(tmp_path))
    with pytest.raises(CollectorError, match="RUN_IDENTITY_COLLECTOR_CONFIG"):
        default_config_dir()
    (tmp_path / "rotel.env").write_text("ROTEL_X=1\n", encoding="utf-8")
    assert default_config_dir() == tmp_path.resolve()
