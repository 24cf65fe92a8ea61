"""Discovery, role routing and the client cache of the ``aws`` plugin."""

from __future__ import annotations

import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from importlib.metadata import entry_points
from typing import Any

import jitr_aws.plugin
import pytest
from awsworld import World
from jitr_aws.clients import client
from jitr_aws.config import aws_config
from jitr_core.backend import Backend
from jitr_core.errors import NoProviderError
from jitr_core.model import LaunchRequest, QueueMessage, Record, RecordQuery
from jitr_core.plugins import JitrPluginManager, list_plugins
from jitr_core.secret import Secret
from jitr_core.settings import Pool, Settings
from jitr_core.startup import ScriptContext


def test_discovery_imports_no_cloud_sdk() -> None:
    code = (
        "import sys, jitr_aws.plugin\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore', 's3transfer'))\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_the_plugin_is_an_entry_point_of_the_jitr_group() -> None:
    [entry] = [ep for ep in entry_points(group="jitr") if ep.name == "aws"]
    assert entry.value == "jitr_aws.plugin" and entry.load() is jitr_aws.plugin


def test_every_provider_hook_is_implemented(plugin_manager: JitrPluginManager) -> None:
    [info] = [p for p in list_plugins(plugin_manager) if p.name == "aws"]
    provider_hooks = {
        name for name in dir(plugin_manager.hook) if name.startswith("jitr_") and name != "jitr_render_startup_script"
    }
    assert provider_hooks <= set(info.hooks)
    assert "jitr_render_startup_script" in info.hooks


def test_no_hook_answers_for_another_provider(launch_request: Any) -> None:
    settings = Settings.from_mapping({"provider": "embedded", "aws": {"region": "not validated when unused"}})
    p = jitr_aws.plugin
    request: LaunchRequest = launch_request("r", "t")
    message = QueueMessage("{}")
    answers = [
        p.jitr_launch_vm(request, settings),
        p.jitr_terminate_vm("i-1", settings),
        p.jitr_list_vms(settings),
        p.jitr_enqueue("jobs", message, 0, settings),
        p.jitr_receive_messages("jobs", 1, 1, settings),
        p.jitr_ack_message("jobs", "r", settings),
        p.jitr_dead_letter("jobs", message, "why", settings),
        p.jitr_dead_letters("jobs", settings),
        p.jitr_store_runner(Record("k", "k"), None, settings),
        p.jitr_load_record("k", "k", settings),
        p.jitr_query_records(RecordQuery("k", "s"), settings),
        p.jitr_delete_record("k", "k", None, settings),
        p.jitr_purge_expired(0.0, settings),
        p.jitr_fetch_secret("webhook_secret", "x", settings),
    ]
    assert answers == [None] * len(answers)
    pool = Pool("linux", frozenset({"self-hosted"}), ("m7i.large",))
    context = ScriptContext("r", pool, "gcp", Secret("e30="), "2.336.0", 3600)
    assert p.jitr_render_startup_script(context) is None


def test_a_role_on_another_provider_is_not_answered(world: World, plugin_manager: JitrPluginManager) -> None:
    mixed = Settings.from_mapping(
        {
            "provider": "aws",
            "queue_provider": "gcp",
            "aws": world.section(jobs_queue_url=None, lifecycle_queue_url=None),
        }
    )
    backend = Backend(plugin_manager, mixed)
    with pytest.raises(NoProviderError, match="'queue' as 'gcp'"):
        backend.enqueue("jobs", QueueMessage("{}"))
    assert backend.load("k", "absent") is None  # the store role still answers


def test_settings_are_parsed_once_per_settings_object(world: World) -> None:
    settings = world.settings()
    assert aws_config(settings) is aws_config(settings)
    assert aws_config(replace(settings)) == aws_config(settings)


def test_clients_are_created_once_and_shared_across_threads(world: World) -> None:
    config = aws_config(world.settings())
    barrier = threading.Barrier(16)

    def race(_: int) -> int:
        barrier.wait()
        return id(client("sqs", config))

    with ThreadPoolExecutor(16) as pool:
        assert len(set(pool.map(race, range(16)))) == 1
    other = aws_config(world.settings(endpoint_url=world.endpoint + "/"))
    assert client("sqs", other) is not client("sqs", config)
    assert client("sqs", config).meta.region_name == "eu-west-1"


def test_the_ec2_user_data_limit_is_declared_to_core(plugin_manager: JitrPluginManager) -> None:
    backend = Backend(plugin_manager, Settings.from_mapping({"provider": "embedded"}))
    assert backend.user_data_limit("aws") == 16 * 1024
    assert backend.user_data_limit() is None  # the embedded provider has no limit
