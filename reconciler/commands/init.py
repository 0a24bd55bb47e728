"""`reconciler init`: write a configuration from the old setup, from HE, or from defaults.

Values come, from weakest to strongest, from the platform's defaults (reported as guesses),
`--from-ifstated`, `--from-hostname-file`, `--from-link`, HE's tunnelInfo (`--from-he`),
an update URL found in `--from-script`, and the explicit flags. The file written is the
documented example with those values filled in; it passes check-config before it is put in
place (atomically, mode 0640, never over an existing file without --force). The update key
goes into its own 0600 file, read from standard input when that file does not exist yet, and
appears in no output. Any problem: one line, exit 1, nothing written.
"""

from __future__ import annotations

import argparse
import getpass
import ipaddress
import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from reconciler.errors import ConfigError, ReconcilerError

if TYPE_CHECKING:
    from reconciler.cli import Environment
    from reconciler.init.sources import Finding
    from reconciler.world.netifd import NetifdTunnel
    from reconciler.world.wanowner import WanOwner

__all__ = ["DEFAULT_KEY_FILE", "DEFAULT_OUTPUT", "run"]

DEFAULT_OUTPUT = "/etc/reconciler.conf"
DEFAULT_KEY_FILE = "/etc/reconciler/tunnelbroker.key"
DEFAULT_INFO_URL = "https://tunnelbroker.net/tunnelInfo.php"
SCHEMA = "reconciler.init/1"

# What each platform gets when nothing says otherwise.
_PLATFORM_DEFAULTS: dict[str, dict[str, Any]] = {
    "openbsd": {
        "daemon.log": "syslog",
        "tunnel.interface": "gif0",
        "tunnel.mode": "gif",
        "tunnel.prefixlen": 128,  # HE's OpenBSD recipe
        "firewall.reload_command": ["pfctl", "-f", "/etc/pf.conf"],
    },
    "linux": {
        "daemon.log": "stderr",  # systemd puts it in the journal
        "tunnel.interface": "he-ipv6",
        "tunnel.mode": "sit",
        "tunnel.prefixlen": 64,
        "firewall.reload_command": [],
    },
}
# The example's probe targets (Google Public DNS, as the original setup pinged).
_EXAMPLE_PROBES = {"probe.ipv4.target": "8.8.8.8", "probe.ipv6.target": "2001:4860:4860::8888"}
_REQUIRED = {
    "tunnel.server_ipv4": "HE's IPv4 end",
    "tunnel.client_ipv6": "our IPv6 address on the tunnel",
    "tunnel.server_ipv6": "HE's IPv6 address on the tunnel",
}


class InitError(ReconcilerError):
    pass


def run(args: argparse.Namespace, env: Environment) -> int:
    from reconciler.init.sources import Finding

    platform = args.platform or ("openbsd" if sys.platform.startswith("openbsd") else "linux")
    output = _output_path(args, env)
    found: dict[str, Finding] = {}
    guessed: dict[str, Finding] = {}
    notes: list[str] = []

    def take(findings: list[Finding] | tuple[Finding, ...]) -> None:
        for finding in findings:
            found[finding.key] = finding
            guessed.pop(finding.key, None)

    defaults = {**_PLATFORM_DEFAULTS[platform], **_EXAMPLE_PROBES}
    for name, value in defaults.items():
        guessed[name] = Finding(name, value, f"the {platform} default")
    key_from_script = _read_sources(args, env, take)
    take(_flag_findings(args))
    _require(found, "tunnelbroker.tunnel_id", "--tunnel-id ID (the tunnel's page on HE)")
    _require(found, "tunnelbroker.username", "--username NAME (your tunnelbroker.net login)")

    key_file = _resolve(env, args.key_file or DEFAULT_KEY_FILE)
    key: str | None = None
    if not key_file.exists():
        key = key_from_script or _key_from_stdin(env, key_file)
    elif not key_file.is_file():
        raise InitError(f"--key-file: {key_file} is not a regular file")
    if key is not None:
        _check_key(key)

    if args.from_he:
        take(_from_he(args, env, found, key_file, key, notes))

    if "wan.interface" not in found:
        from reconciler.world.discovery import default_route_interface

        wan = default_route_interface(platform)
        guessed["wan.interface"] = Finding(
            "wan.interface", wan, "the interface of the IPv4 default route"
        )
    _guess_server_ipv6(found, guessed)
    missing = [f"{name} ({what})" for name, what in _REQUIRED.items() if name not in found]
    if missing:
        raise InitError(
            f"not known: {', '.join(missing)}; give --from-he, --from-hostname-file or --from-link"
        )
    if platform == "openbsd" and "tunnel.hostname_file" not in found:
        interface = (found.get("tunnel.interface") or guessed["tunnel.interface"]).value
        guessed["tunnel.hostname_file"] = Finding(
            "tunnel.hostname_file", f"/etc/hostname.{interface}", "the only name netstart reads"
        )
    values = _config_values(platform, found, guessed, key_file, args)
    text = _render(values, notes, found)
    _write(output, text, key_file, key, force=args.force)
    _report(env, args, platform, output, key_file, key is not None, found, guessed)
    return 0


# -- gathering --------------------------------------------------------------------------------


def _read_sources(args: argparse.Namespace, env: Environment, take: Any) -> str | None:
    """Take the findings of every --from-FILE source; the update key from a script, if any."""
    from reconciler.init.sources import parse_hostname_if, parse_ifstated, parse_update_url

    if args.from_ifstated:
        path = _resolve(env, args.from_ifstated)
        take(parse_ifstated(_read(path, "--from-ifstated"), str(path)))
    if args.from_hostname_file:
        path = _resolve(env, args.from_hostname_file)
        take(parse_hostname_if(_read(path, "--from-hostname-file"), str(path)))
    if args.from_link:
        from reconciler.init.sources import Finding
        from reconciler.world.discovery import read_tunnel_link

        link = read_tunnel_link(args.from_link)
        where = f"link {args.from_link}"
        take([Finding(key, value, where) for key, value in link.values.items()])
    key = None
    for script in args.from_script or ():
        path = _resolve(env, script)
        credentials = parse_update_url(_read(path, "--from-script"), str(path))
        if credentials is None:
            raise InitError(f"--from-script: {path} holds no tunnelbroker update URL")
        take(credentials.findings)
        key = key or credentials.key
    return key


def _flag_findings(args: argparse.Namespace) -> list[Finding]:
    from reconciler.init.sources import Finding

    flags = {
        "tunnelbroker.tunnel_id": ("--tunnel-id", args.tunnel_id),
        "tunnelbroker.username": ("--username", args.username),
        "wan.interface": ("--wan", args.wan),
        "tunnel.interface": ("--tunnel-interface", args.tunnel_interface),
    }
    findings = [Finding(key, value, flag) for key, (flag, value) in flags.items() if value]
    tunnel_id = args.tunnel_id
    if tunnel_id is not None and not (tunnel_id.isascii() and tunnel_id.isdigit()):
        raise InitError(f"--tunnel-id must be HE's numeric tunnel id, not {tunnel_id!r}")
    return findings


def _from_he(
    args: argparse.Namespace,
    env: Environment,
    found: dict[str, Finding],
    key_file: Path,
    key: str | None,
    notes: list[str],
) -> list[Finding]:
    """The tunnel as HE's tunnelInfo.php describes it, read as the daemon's client reads it."""
    from reconciler.atomicfile import write_new
    from reconciler.init.sources import Finding
    from reconciler.model.config import TunnelbrokerConfig
    from reconciler.world.tunnelbroker import TunnelbrokerClient

    info_url = args.info_url or DEFAULT_INFO_URL
    ca_file = _resolve(env, args.ca_file) if args.ca_file else None
    with tempfile.TemporaryDirectory(prefix="reconciler-init-") as private:
        if key is not None:  # the key file is not there yet: lend the client a private copy
            key_file = Path(private) / "key"
            write_new(key_file, key.encode("ascii"), mode=0o600)
        config = TunnelbrokerConfig(
            tunnel_id=found["tunnelbroker.tunnel_id"].value,
            username=found["tunnelbroker.username"].value,
            update_key_file=key_file,
            update_url="https://ipv4.tunnelbroker.net/nic/update",
            info_url=info_url,
            min_update_interval=600.0,
            connect_timeout=5.0,
            read_timeout=15.0,
            ca_file=ca_file,
        )
        client = TunnelbrokerClient(config)
        try:
            info = client.read_tunnel_info()
        finally:
            client.close()
    assert info is not None  # info_url is set
    if not info.outcome.succeeded:
        raise InitError(f"--from-he: {info.outcome.message}")
    where = "HE tunnelInfo"
    findings = [
        Finding("tunnelbroker.info_url", info_url, "--info-url" if args.info_url else where)
    ]
    if ca_file is not None:
        findings.append(Finding("tunnelbroker.ca_file", str(ca_file), "--ca-file"))
    if info.server_ipv4:
        server = _he_value("serverv4", info.server_ipv4, ipaddress.IPv4Address, "an IPv4 address")
        findings.append(Finding("tunnel.server_ipv4", str(server), where))
    for key, tag, value in (
        ("client_ipv6", "clientv6", info.client_ipv6),
        ("server_ipv6", "serverv6", info.server_ipv6),
    ):
        if value:
            end = _he_value(tag, value, ipaddress.IPv6Interface, "an IPv6 address[/length]")
            findings.append(Finding(f"tunnel.{key}", str(end.ip), where))
            if "/" in value:
                findings.append(Finding("tunnel.prefixlen", end.network.prefixlen, where))
    for tag, length, prefix in (("routed64", 64, info.routed64), ("routed48", 48, info.routed48)):
        if prefix:
            network = _he_value(tag, prefix, ipaddress.IPv6Network, f"an IPv6 /{length} prefix")
            if network.prefixlen != length:
                raise InitError(f"--from-he: HE tunnelInfo's {tag} is not a /{length}: {network}")
            notes.append(f"HE routes this /{length} to the tunnel: {network}")
    return findings


_T = TypeVar("_T")
_HE_VALUE_MAX = 64  # the longest value tunnelInfo has any business sending (an IPv6 /128)


def _he_value(tag: str, text: str, kind: Callable[[str], _T], claim: str) -> _T:
    """A tunnelInfo value read as what it claims to be; InitError (one clean line naming the
    field) for anything else, before it can reach a file or the terminal raw."""
    try:
        if len(text) <= _HE_VALUE_MAX and text.isascii() and text.isprintable():
            return kind(text)
    except ValueError:
        pass
    shown = "".join(ch if ch.isprintable() and ch.isascii() else "?" for ch in text[:40])
    more = f"... ({len(text)} chars)" if len(text) > 40 else ""
    raise InitError(f"--from-he: HE tunnelInfo's {tag} is not {claim}: {shown!r}{more}")


def _guess_server_ipv6(found: dict[str, Finding], guessed: dict[str, Finding]) -> None:
    """HE numbers its end ::1 and ours ::2 of the tunnel's /64."""
    from reconciler.init.sources import Finding

    client = found.get("tunnel.client_ipv6")
    if "tunnel.server_ipv6" in found or client is None:
        return
    address = ipaddress.IPv6Address(client.value)
    if int(address) & 0xFFFF == 2:
        server = str(ipaddress.IPv6Address(int(address) - 1))
        guessed["tunnel.server_ipv6"] = Finding(
            "tunnel.server_ipv6", server, "HE's numbering (its end ::1, ours ::2)"
        )
        found["tunnel.server_ipv6"] = guessed["tunnel.server_ipv6"]


def _config_values(
    platform: str,
    found: dict[str, Finding],
    guessed: dict[str, Finding],
    key_file: Path,
    args: argparse.Namespace,
) -> dict[str, Any]:
    values: dict[str, Any] = {key: f.value for key, f in guessed.items()}
    values.update({key: f.value for key, f in found.items()})
    values["daemon.platform"] = platform
    # The example's "../state" is for the repository's demo; a router gets its platform's
    # default unless --state-dir says otherwise.
    values["daemon.state_dir"] = str(_resolve_path(args.state_dir)) if args.state_dir else None
    values["wan.restart_command"] = None  # the platform's own way
    values["tunnelbroker.update_key_file"] = str(key_file)
    if platform != "openbsd":
        values["tunnel.hostname_file"] = None
    return values


# -- writing ----------------------------------------------------------------------------------


def _render(values: dict[str, Any], notes: list[str], found: dict[str, Finding]) -> str:
    from reconciler.init.template import example_config, fill

    sources = sorted(
        {f.source.split(":")[0] for f in found.values() if not f.source.startswith("--")}
    )
    header = (
        "# Written by `reconciler init` from: " + (", ".join(sources) or "defaults") + ".\n"
        "# Every key is documented below and in docs/configuration.md.\n"
    )
    try:
        template = example_config(values["daemon.platform"])
        return header + fill(template, values, {"tunnel": notes})
    except ValueError as exc:  # a value with no TOML form (a lone surrogate from argv)
        raise InitError(f"cannot write the configuration: {exc}") from None


def _is_a_shipped_example(output: Path) -> bool:
    """Whether `output` is a shipped example as it was installed (scripts/install-linux puts
    the Linux one at /etc/reconciler.conf): nothing of anyone's to lose by replacing it."""
    from reconciler.init.template import example_config

    if output.is_symlink() or not output.is_file():
        return False
    try:
        text = output.read_text("utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    return text in (example_config("linux"), example_config("openbsd"))


def _write(output: Path, text: str, key_file: Path, key: str | None, *, force: bool) -> None:
    """Check the configuration, then create the key file and put the configuration in place."""
    from reconciler.atomicfile import scratch_file, write_atomically
    from reconciler.configfile import load_config

    if output.exists() and not force and not _is_a_shipped_example(output):
        raise InitError(f"{output} exists; use --force to replace it")
    if not output.parent.is_dir():
        raise InitError(f"-o: directory {output.parent} does not exist")
    try:
        # Checked where it will live (relative paths resolve from there), under a name
        # nobody can predict: the directory may be writable by others.
        with scratch_file(output, text.encode("utf-8"), mode=0o600) as candidate:
            try:
                load_config(candidate)
            except ConfigError as exc:
                # The key file is made below, once everything else is right.
                absent = f"tunnelbroker.update_key_file: {key_file} does not exist"
                problems = [p for p in exc.problems if not (key is not None and p.endswith(absent))]
                if problems:
                    shown = "; ".join(p.replace(str(candidate), str(output)) for p in problems)
                    raise InitError(f"the configuration would not be valid: {shown}") from None
        if key is not None:
            if not key_file.parent.is_dir():
                key_file.parent.mkdir(mode=0o700, parents=True)
            write_atomically(key_file, (key + "\n").encode("ascii"), mode=0o600)
        write_atomically(output, text.encode("utf-8"), mode=0o640)
    except OSError as exc:
        raise InitError(f"cannot write {exc.filename or output}: {exc.strerror}") from None


def _report(
    env: Environment,
    args: argparse.Namespace,
    platform: str,
    output: Path,
    key_file: Path,
    key_created: bool,
    found: dict[str, Finding],
    guessed: dict[str, Finding],
) -> None:
    guesses = {k: f for k, f in guessed.items() if k not in found or found[k] is f}
    facts = {k: f for k, f in found.items() if k not in guesses}
    next_command = f"reconciler diff --observe -c {output}"
    if args.json:
        document = {
            "schema": SCHEMA,
            "config": str(output),
            "platform": platform,
            "found": [_json(f) for f in sorted(facts.values(), key=lambda f: f.key)],
            "guessed": [_json(f) for f in sorted(guesses.values(), key=lambda f: f.key)],
            "key_file": {"path": str(key_file), "created": key_created},
            "wan_owner": _wan_owner_json(platform, found, guessed),
            "netifd": [
                {"interface": t.interface, "link": t.link, "updates_he": t.updates_he}
                for t in _netifd(env, platform, {**guessed, **found})
            ],
            "next": next_command,
        }
        print(json.dumps(document, indent=2), file=env.stdout)
        return
    lines = [f"wrote {output} ({platform})", "found:"]
    lines += [f"  {f.key} = {_shown(f.value)}  ({f.source})" for f in _sorted(facts)]
    if guesses:
        lines.append("guessed (check these):")
        lines += [f"  {f.key} = {_shown(f.value)}  ({f.source})" for f in _sorted(guesses)]
    state = "created, mode 0600" if key_created else "exists, left as it is"
    lines.append(f"update key: {key_file} ({state})")
    owner = _wan_owner(platform, found, guessed)
    if owner is not None:
        lines.append(f"WAN owner: {owner.describe()}")
    known = {**guessed, **found}
    interface, tunnel_id = (
        str(known[key].value) if key in known else ""
        for key in ("tunnel.interface", "tunnelbroker.tunnel_id")
    )
    for tunnel in _netifd(env, platform, known):
        lines.append(f"tunnel owner: {tunnel.owner_line(interface)}")
        lines.append(f"HE updates: {tunnel.updater_line()}")
        warning = tunnel.warning(tunnel_id)
        if warning is not None:
            print(f"reconciler: warning: {warning}", file=env.stderr)
    lines.append(f"next: {next_command}")
    print("\n".join(lines), file=env.stdout)


def _netifd(env: Environment, platform: str, found: dict[str, Finding]) -> list[NetifdTunnel]:
    """OpenWrt: netifd's 6in4 interfaces that are the tunnel written, or the same HE one."""
    if platform != "linux":
        return []
    from reconciler.world.netifd import tunnels_concerning

    def value(key: str) -> str | None:
        return str(found[key].value) if key in found else None

    return tunnels_concerning(
        value("tunnel.interface") or "",
        value("tunnel.server_ipv4"),
        value("tunnelbroker.tunnel_id"),
        env.environ,
    )


def _wan_owner(
    platform: str, found: dict[str, Finding], guessed: dict[str, Finding]
) -> WanOwner | None:
    """Who owns the WAN on this Linux host (None elsewhere, or for another platform)."""
    if platform != "linux" or not sys.platform.startswith("linux"):
        return None
    from reconciler.world.wanowner import detect_here

    wan = found.get("wan.interface") or guessed.get("wan.interface")
    return None if wan is None else detect_here(str(wan.value))


def _wan_owner_json(
    platform: str, found: dict[str, Finding], guessed: dict[str, Finding]
) -> dict[str, Any] | None:
    owner = _wan_owner(platform, found, guessed)
    if owner is None:
        return None
    restart = [list(step) for step in owner.steps]
    return {"name": owner.recorded, "found": owner.found, "restart_wan": restart}


# -- small pieces -----------------------------------------------------------------------------


def _output_path(args: argparse.Namespace, env: Environment) -> Path:
    if args.output == "":
        raise InitError("-o: empty path")
    return _resolve(env, args.output or DEFAULT_OUTPUT)


def _resolve(env: Environment, path: str) -> Path:
    return Path(os.path.normpath(env.cwd / Path(path).expanduser()))


def _resolve_path(path: str) -> Path:
    return Path(path).expanduser()


def _read(path: Path, flag: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InitError(f"{flag}: {path} is not UTF-8 text") from None
    except OSError as exc:
        raise InitError(f"{flag}: cannot read {path}: {exc.strerror}") from None


def _require(found: dict[str, Finding], key: str, how: str) -> None:
    if key not in found:
        raise InitError(f"{key} is not known: give {how}")


def _key_from_stdin(env: Environment, key_file: Path) -> str:
    """The update key, typed (no echo on a terminal) or piped in."""
    stdin = env.stdin
    prompt = f"update key for {key_file} (tunnelbroker.net, Advanced tab): "
    try:
        key = getpass.getpass(prompt, stream=env.stderr) if stdin.isatty() else stdin.readline()
    except (EOFError, OSError):
        key = ""
    key = key.strip()
    if not key:
        raise InitError(f"{key_file} does not exist and no update key came on standard input")
    return key


def _check_key(key: str) -> None:
    """The key as the daemon will check it when it reads the file (never quoted)."""
    from reconciler.world.updatekey import key_problem

    problem = key_problem(key.encode("utf-8"))
    if problem is not None:
        raise InitError(f"the update key on standard input {problem}")


def _json(finding: Finding) -> dict[str, Any]:
    return {"key": finding.key, "value": finding.value, "source": finding.source}


def _sorted(findings: dict[str, Finding]) -> list[Finding]:
    return sorted(findings.values(), key=lambda f: f.key)


def _shown(value: Any) -> str:
    from reconciler.init.template import toml_value

    return toml_value(value)
