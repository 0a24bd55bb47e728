"""The firewall evaluator of `doctor`: pf's rules as `pfctl -sr` prints them, nftables' as
`nft -j list ruleset` prints them (the lab's scenarios evaluate real nft output too)."""

from __future__ import annotations

import json

import pytest

from reconciler.world.diagnose.firewall import Packet, evaluate, parse_nft_json, parse_pf_rules

HE_PING = Packet(protocol=1, saddr="66.220.2.74", daddr="198.51.100.7", iif="em0", icmp_type=8)
HE_6IN4 = Packet(protocol=41, saddr="216.66.80.26", daddr="198.51.100.7", iif="em0")


def pf(text: str, packet: Packet) -> str:
    return evaluate(parse_pf_rules(text, "em0"), packet).answer


def test_pf_passes_what_no_rule_blocks() -> None:
    assert pf("", HE_PING) == "pass"
    assert pf("pass out all flags S/SA\nblock in on em1 all\n", HE_PING) == "pass"


def test_pf_the_last_matching_rule_decides() -> None:
    rules = (
        "block drop in log all\n"
        "pass in on em0 inet proto icmp from 66.220.2.74 to any icmp-type echoreq keep state\n"
    )
    assert pf(rules, HE_PING) == "pass"
    assert pf(rules, HE_6IN4) == "drop"
    verdict = evaluate(parse_pf_rules(rules, "em0"), HE_6IN4)
    assert "block drop in log all" in verdict.reason


def test_pf_a_quick_rule_decides_at_once() -> None:
    rules = (
        "block return in quick on egress inet proto icmp all\n"
        "pass in on egress inet proto icmp from 66.220.2.74 to any icmp-type echoreq\n"
    )
    assert pf(rules, HE_PING) == "drop"


def test_pf_protocol_41_from_hes_server() -> None:
    rules = (
        "block return in log on egress all\n"
        "pass in quick on egress inet proto ipv6 from 216.66.80.26 to (em0) keep state\n"
    )
    assert pf(rules, HE_6IN4) == "pass"
    assert pf(rules, HE_PING) == "drop"
    other_server = Packet(protocol=41, saddr="216.66.84.46", daddr="198.51.100.7", iif="em0")
    assert pf(rules, other_server) == "drop"


def test_pf_match_and_scrub_rules_decide_nothing() -> None:
    assert pf("block in all\nmatch in all scrub (no-df random-id)\n", HE_PING) == "drop"


@pytest.mark.parametrize(
    "rule",
    [
        "pass in from <he_servers> to any",  # a table: its contents are not listed
        'anchor "relayd/*" all',  # the anchor's rules are not listed
        "pass in on wan inet proto icmp all",  # an interface group it cannot see into
        "pass in inet proto icmp all user root",  # a word it does not evaluate
    ],
)
def test_pf_cannot_tell_rather_than_guess(rule: str) -> None:
    """After a block, a rule it cannot read may or may not pass the packet: "unknown",
    naming the rule, never a pass."""
    verdict = evaluate(parse_pf_rules(f"block in all\n{rule}\n", "em0"), HE_PING)
    assert verdict.answer == "unknown"
    assert rule.split()[0] in verdict.reason


def test_pf_a_rule_it_cannot_read_that_changes_nothing_does_not_matter() -> None:
    """A pass it cannot read after a quick pass: the packet passes either way."""
    rules = "pass in quick inet proto icmp all icmp-type echoreq\nblock in from <t> to any\n"
    assert pf(rules, HE_PING) == "pass"


def nft(rules: list[list[dict[str, object]]], policy: str = "accept") -> str:
    items: list[dict[str, object]] = [
        {"metainfo": {"json_schema_version": 1}},
        {"table": {"family": "inet", "name": "filter"}},
        {
            "chain": {
                "family": "inet",
                "table": "filter",
                "name": "input",
                "type": "filter",
                "hook": "input",
                "prio": 0,
                "policy": policy,
            }
        },
        {"chain": {"family": "inet", "table": "filter", "name": "mine"}},
    ]
    for expr in rules:
        chain = "mine" if expr and expr[0] == {"_chain": "mine"} else "input"
        items.append(
            {
                "rule": {
                    "family": "inet",
                    "table": "filter",
                    "chain": chain,
                    "expr": [e for e in expr if "_chain" not in e],
                }
            }
        )
    return json.dumps({"nftables": items})


def match(left: dict[str, object], right: object, op: str = "==") -> dict[str, object]:
    return {"match": {"op": op, "left": left, "right": right}}


SADDR = {"payload": {"protocol": "ip", "field": "saddr"}}
PROTO = {"payload": {"protocol": "ip", "field": "protocol"}}
ICMP_TYPE = {"payload": {"protocol": "icmp", "field": "type"}}
CT = {"ct": {"key": "state"}}
IIF = {"meta": {"key": "iifname"}}


def nft_answer(text: str, packet: Packet) -> str:
    return evaluate(parse_nft_json(text), packet).answer


def test_nft_policy_drop_with_an_accept_for_hes_ping() -> None:
    text = nft(
        [
            [match(CT, ["established", "related"], "in"), {"accept": None}],
            [
                match(IIF, "em*"),
                match(SADDR, "66.220.2.74"),
                match(ICMP_TYPE, "echo-request"),
                {"accept": None},
            ],
        ],
        policy="drop",
    )
    assert nft_answer(text, HE_PING) == "pass"
    # protocol 41 is not established before we send: the policy drops it
    verdict = evaluate(parse_nft_json(text), HE_6IN4)
    assert verdict.answer == "drop" and "policy drop" in verdict.reason


def test_nft_prefixes_sets_and_protocol_names() -> None:
    text = nft(
        [
            [match(SADDR, {"prefix": {"addr": "216.66.80.0", "len": 24}}), match(PROTO, "ipv6"),
             {"accept": None}],
            [match(PROTO, {"set": ["ipv6", "gre"]}), {"drop": None}],
        ]
    )  # fmt: skip
    assert nft_answer(text, HE_6IN4) == "pass"
    stranger = Packet(protocol=41, saddr="192.0.2.9", daddr="198.51.100.7", iif="em0")
    assert nft_answer(text, stranger) == "drop"


def test_nft_jumps_and_returns() -> None:
    text = nft(
        [
            [{"jump": {"target": "mine"}}],
            [{"_chain": "mine"}, match(PROTO, "icmp"), {"drop": None}],
            [{"_chain": "mine"}, {"return": None}],
        ]
    )
    assert nft_answer(text, HE_PING) == "drop"
    assert nft_answer(text, HE_6IN4) == "pass"


def test_nft_a_rule_it_cannot_read_gives_unknown_never_a_pass() -> None:
    text = nft(
        [[match({"meta": {"key": "skuid"}}, 0), {"accept": None}]],
        policy="drop",
    )
    verdict = evaluate(parse_nft_json(text), HE_PING)
    assert verdict.answer == "unknown"
    assert "skuid" in verdict.reason


def test_nft_not_json_of_nft_is_an_error() -> None:
    with pytest.raises(ValueError):
        parse_nft_json('{"tables": []}')


def _shipped_rules_as_nft_shows_them(extra: str = "") -> str:
    """etc/nftables/reconciler.nft loaded into a scratch namespace (with `extra` beside it),
    read back as `nft -j list ruleset`: the real JSON, not a hand-made one."""
    import os
    import subprocess
    from pathlib import Path

    text = (Path(__file__).parents[2] / "etc" / "nftables" / "reconciler.nft").read_text()
    text = text.replace('"eth0"', '"em0"').replace("216.66.22.2", "216.66.80.26")
    name = f"rcfw{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=20)
    try:
        for script in (text, extra):
            if script:
                subprocess.run(
                    ["ip", "netns", "exec", name, "nft", "-f", "-"],
                    input=script,
                    text=True,
                    check=True,
                    timeout=20,
                )
        shown = subprocess.run(
            ["ip", "netns", "exec", name, "nft", "-j", "list", "ruleset"],
            capture_output=True,
            text=True,
            check=True,
            timeout=20,
        )
        return shown.stdout
    finally:
        subprocess.run(["ip", "netns", "del", name], timeout=20)


@pytest.mark.nftables
def test_the_shipped_nftables_rules_pass_hes_ping_and_protocol_41(lab_available: None) -> None:
    """The project's own etc/nftables/reconciler.nft, as the kernel shows it: HE's ping and
    protocol 41 from HE's server pass, protocol 41 from anyone else is dropped."""
    rules = parse_nft_json(_shipped_rules_as_nft_shows_them())
    assert evaluate(rules, HE_PING).answer == "pass"
    assert evaluate(rules, HE_6IN4).answer == "pass"
    stranger = Packet(protocol=41, saddr="192.0.2.9", daddr="198.51.100.7", iif="em0")
    verdict = evaluate(rules, stranger)
    assert verdict.answer == "drop" and "protocol" in verdict.reason


@pytest.mark.nftables
def test_an_accept_in_the_shipped_table_does_not_outvote_a_drop_in_another(
    lab_available: None,
) -> None:
    """Every base chain on the hook sees the packet: a policy drop elsewhere drops HE's ping
    though reconciler's table accepts it (as the file's own comment warns)."""
    strict = (
        "table inet mine {\n chain input {\n type filter hook input priority 10\n"
        " policy drop\n }\n}\n"
    )
    rules = parse_nft_json(_shipped_rules_as_nft_shows_them(strict))
    verdict = evaluate(rules, HE_PING)
    assert verdict.answer == "drop" and "policy drop" in verdict.reason


def test_nft_netdev_ingress_rules_are_not_taken_for_a_pass() -> None:
    """A netdev chain (before IP) with rules is not evaluated: no pass is claimed."""
    document = json.loads(nft([]))
    document["nftables"] += [
        {"chain": {"family": "netdev", "table": "edge", "name": "in", "hook": "ingress"}},
        {"rule": {"family": "netdev", "table": "edge", "chain": "in", "expr": [{"drop": None}]}},
    ]
    verdict = evaluate(parse_nft_json(json.dumps(document)), HE_6IN4)
    assert verdict.answer == "unknown" and "netdev edge in" in verdict.reason
    assert evaluate(parse_nft_json(nft([])), HE_6IN4).answer == "pass"
