"""The `sitewatch` command as a user runs it: real processes, real exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sitewatch.passwords import verify_password

ROOT = Path(__file__).resolve().parents[2]
SITEWATCH = [sys.executable, "-m", "sitewatch.cli"]


def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SITEWATCH, *args], input=stdin, capture_output=True, text=True, check=False, cwd=ROOT
    )


def test_check_config_says_ok_for_each_example_file() -> None:
    result = run("check-config", "config/inventory.yaml", "config/agent.yaml",
                 "config/collector.yaml")  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        "config/inventory.yaml: ok (inventory)",
        "config/agent.yaml: ok (agent)",
        "config/collector.yaml: ok (collector, database: /var/lib/sitewatch/collector.db)",
    ]


def test_check_config_prints_one_line_per_problem_and_exits_1(tmp_path: Path) -> None:
    text = (
        (ROOT / "config" / "inventory.yaml").read_text().replace("users: 7\n", "users: lots\n", 1)
    )
    bad = tmp_path / "inventory.yaml"
    bad.write_text(text)
    line = text.splitlines().index("    users: lots") + 1
    result = run("check-config", str(bad), "config/agent.yaml")
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"{bad}:{line}: sites[2].users: expected a whole number, got the text 'lots'",
        "config/agent.yaml: ok (agent)",
    ]
    assert "Traceback" not in result.stderr


def test_check_config_warns_of_a_failover_it_cannot_see_and_exits_0(tmp_path: Path) -> None:
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(
        "organisation: Test Municipality\n"
        "sites:\n"
        "  - id: wv\n"
        "    name: Willowvale\n"
        "    users: 5\n"
        "    links:\n"
        "      - {id: wv-mpls, kind: mpls, role: primary, to: hub, probe: [10.99.6.1]}\n"
        "      - {id: wv-fibre, kind: fibre, role: backup, to: hub, probe: [10.99.7.1]}\n"
    )
    result = run("check-config", str(inventory))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        f"{inventory}:{line}: sites[0].links[{i}]: warning: link {link!r} has no path-bound "
        "evidence (edge, interface, next_hop, source or via): a failover to/from it cannot be "
        "seen"
        for i, (line, link) in enumerate([(7, "wv-mpls"), (8, "wv-fibre")])
    ] + [f"{inventory}: ok (inventory)"]
    assert result.stderr == ""


def test_check_config_without_files_is_a_usage_error() -> None:
    result = run("check-config")
    assert result.returncode == 2
    assert "FILE" in result.stderr


def test_hash_password_reads_stdin_and_prints_a_verifiable_hash() -> None:
    result = run("hash-password", stdin="correct horse battery\n")
    assert result.returncode == 0, result.stderr
    stored = result.stdout.strip()
    assert stored.startswith("scrypt$")
    assert verify_password("correct horse battery", stored)
    assert not verify_password("correct horse battery\n", stored)


def test_hash_password_refuses_a_short_password() -> None:
    result = run("hash-password", stdin="short\n")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "at least 8 characters" in result.stderr


def test_probe_bad_arguments_exit_2_with_one_line() -> None:
    cases = [
        (["probe", "icmp", "999.1.1.1"], "'999.1.1.1' is not a valid IP address or host name"),
        (["probe", "tcp", "127.0.0.1"], "tcp needs --port"),
        (["probe", "tcp", "127.0.0.1", "--port", "70000"], "--port must be between 1 and 65535"),
        (["probe", "tcp", "127.0.0.1", "--port", "x"], "argument --port: invalid int value"),
        (["probe", "ping", "127.0.0.1"], "argument KIND: invalid choice: 'ping'"),
        (["probe", "http", "ftp://127.0.0.1/"], "is not an http:// or https:// URL"),
        (["probe", "snmp", "127.0.0.1", "--snmp-version", "3"], "SNMP version 3 needs --user"),
        (["probe", "snmp", "127.0.0.1", "--profile", "custom"], "needs at least one --oid"),
        (["probe", "host", "/no/such/dir"], "is not a directory"),
    ]
    for args, message in cases:
        result = run(*args)
        assert result.returncode == 2, args
        assert result.stdout == ""
        lines = result.stderr.splitlines()
        assert len(lines) == 1, (args, result.stderr)
        assert message in lines[0], (args, lines[0])


def test_probe_prints_the_result_record_with_json(tmp_path: Path) -> None:
    result = run("probe", "tcp", "127.0.0.1", "--port", "1", "--json", "--timeout", "1")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert (record["kind"], record["ok"], record["error_kind"]) == ("tcp", False, "refused")
    result = run("probe", "host", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("host localhost: ok")


def test_agent_and_collector_with_bad_configs_exit_1_with_one_line_each(tmp_path: Path) -> None:
    agent = tmp_path / "agent.yaml"
    agent.write_text("id: x\nsite: alpha\n")
    result = run("agent", "--config", str(agent))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{agent}:1: missing required key 'collector'",
        f"{agent}:1: missing required key 'token_file'",
    ]
    missing = tmp_path / "collector.yaml"
    result = run("collector", "--config", str(missing))
    assert (result.returncode, result.stderr) == (
        1,
        f"{missing}: cannot read: No such file or directory\n",
    )
