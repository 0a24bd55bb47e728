"""Would the firewall let a packet in? A small, honest evaluator of the common rule shapes.

`doctor` asks it two questions: does an ICMP echo request from HE's ping source reach us
(HE refuses an endpoint it cannot ping), and do the tunnel's packets from HE's server
(protocol 41; UDP for the lab's vxlan stand-in) reach us. The rules come from the system:
nftables as `nft -j list ruleset` (JSON), pf as `pfctl -sr` (text).

Only what is understood decides: accept/drop/reject by protocol, source and destination
address or prefix, input interface, ICMP type, destination port, connection state (the
packets asked about are new ones) and the chain's policy; jumps and returns in nftables,
`quick` and last-match-wins in pf. A match it does not understand is followed both ways: if
both end alike the answer stands, else it is "cannot tell", naming the rule. Never a pass it
cannot show.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

from attrs import frozen

__all__ = [
    "FirewallVerdict",
    "Packet",
    "Ruleset",
    "evaluate",
    "parse_nft_json",
    "parse_pf_rules",
]

Tri = bool | None  # a match: yes, no, or cannot tell
Answer = Literal["pass", "drop", "unknown"]
Outcome = Literal["pass", "drop", "unknown", "return"]  # "return": a jumped-to chain ended

PROTOCOLS: Mapping[str, int] = {
    "icmp": 1, "igmp": 2, "ipencap": 4, "ipip": 4, "tcp": 6, "udp": 17, "ipv6": 41,
    "gre": 47, "esp": 50, "ah": 51, "icmpv6": 58, "ipv6-icmp": 58, "sctp": 132,
}  # fmt: skip
ICMP_TYPES: Mapping[str, int] = {
    "echo-reply": 0, "echorep": 0, "destination-unreachable": 3, "unreach": 3,
    "echo-request": 8, "echoreq": 8, "time-exceeded": 11, "timex": 11,
}  # fmt: skip
_BRANCH_LIMIT = 256  # paths explored through rules it cannot read, then "cannot tell"


@frozen
class Packet:
    """A new packet arriving on `iif` (the WAN) from `saddr` for `daddr` (our address)."""

    protocol: int
    saddr: str
    daddr: str
    iif: str
    icmp_type: int | None = None
    dport: int | None = None


@frozen
class FirewallVerdict:
    answer: Answer
    reason: str  # the rule (or policy) that decided, or why it cannot tell


Match = Callable[[Packet], Tri]


@frozen
class Rule:
    """One rule: all `matches` must hold; `action` is accept, drop, jump:NAME, goto:NAME,
    return, continue, unknown (a rule whose effect is not known: a pf anchor)."""

    matches: tuple[Match, ...]
    action: str
    text: str
    quick: bool = False  # pf


@frozen
class Ruleset:
    """`kind` "nft": `chains` hold rules, `base` the hooked chains in evaluation order with
    their policies. `kind` "pf": one list of rules, the last match wins."""

    kind: Literal["nft", "pf"]
    chains: Mapping[str, tuple[Rule, ...]]
    base: tuple[tuple[str, str], ...] = ()  # (chain, policy)
    source: str = ""
    # chains the packet may meet that are not evaluated (nftables' netdev ingress, before
    # IP): with rules in them, no pass is claimed
    unread: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return (
            not any(self.chains.values())
            and all(p == "accept" for _, p in self.base)
            and not self.unread
        )


def evaluate(ruleset: Ruleset, packet: Packet) -> FirewallVerdict:
    """Whether `packet` gets in: pass, drop, or unknown (with the rule that made it so)."""
    if ruleset.kind == "pf":
        outcomes = _pf_paths(ruleset.chains.get("", ()), packet)
    else:
        outcomes = _nft_paths(ruleset, packet)
    answers = {answer for answer, _ in outcomes}
    if len(outcomes) > _BRANCH_LIMIT:
        return FirewallVerdict("unknown", "too many rules it cannot read")
    if answers == {"pass"} and ruleset.unread:
        chains = ", ".join(ruleset.unread)
        return FirewallVerdict("unknown", f"cannot tell: rules it does not evaluate ({chains})")
    if len(answers) == 1:
        answer = answers.pop()
        reasons = [reason for a, reason in outcomes if a == answer]
        reason = next((r for r in reasons if not r.startswith("cannot tell")), reasons[0])
        return FirewallVerdict(answer, reason)
    unread = [r for _, r in outcomes if r.startswith("cannot tell")]
    why = unread[0] if unread else "cannot tell: the rules go both ways"
    return FirewallVerdict("unknown", why)


# --- the walk ------------------------------------------------------------------------------


def _each_match(rule: Rule, packet: Packet) -> Tri:
    result: Tri = True
    for match in rule.matches:
        value = match(packet)
        if value is False:
            return False
        if value is None:
            result = None
    return result


def _nft_paths(ruleset: Ruleset, packet: Packet) -> list[tuple[Answer, str]]:
    """Every way through the hooked chains: each must accept for the packet to pass."""
    paths: list[tuple[Answer, str]] = [("pass", "no rule drops it")]
    for chain, policy in ruleset.base:
        following: list[tuple[Answer, str]] = []
        for answer, reason in paths:
            if answer != "pass":
                following.append((answer, reason))
                continue
            for verdict, why in _chain_paths(ruleset, chain, packet, 0, policy):
                final: Answer = "drop" if verdict == "drop" else "unknown"
                if verdict in ("pass", "return"):
                    final = "pass"
                following.append((final, why or reason))
            if len(following) > _BRANCH_LIMIT:
                return following
        paths = following
    return paths


def _chain_paths(
    ruleset: Ruleset, chain: str, packet: Packet, start: int, policy: str | None, depth: int = 0
) -> list[tuple[Outcome, str]]:
    """Outcomes from rule `start` of `chain`: ("pass"/"drop", why), ("return", "") when a
    jumped-to chain ends without a verdict, or ("unknown", why)."""
    if depth > 16:
        return [("unknown", f"cannot tell: chains nested too deep at {chain}")]
    rules = ruleset.chains.get(chain, ())
    for index in range(start, len(rules)):
        rule = rules[index]
        matched = _each_match(rule, packet)
        if matched is False:
            continue
        taken = _take(ruleset, rule, packet, chain, index, policy, depth)
        if matched is True:
            return taken
        # cannot tell: one way the rule applies, the other it does not
        skipped = _chain_paths(ruleset, chain, packet, index + 1, policy, depth)
        if {a for a, _ in taken} != {a for a, _ in skipped}:
            unread = f"cannot tell whether `{rule.text}` applies"
            return [(a, r or unread) for a, r in taken] + [(a, r or unread) for a, r in skipped]
        return taken + skipped
    if policy is None:
        return [("return", "")]  # back to the chain that jumped here
    return _end_of(chain, policy)


def _take(
    ruleset: Ruleset,
    rule: Rule,
    packet: Packet,
    chain: str,
    index: int,
    policy: str | None,
    depth: int,
) -> list[tuple[Outcome, str]]:
    action = rule.action
    if action == "accept":
        return [("pass", "")]
    if action == "drop":
        return [("drop", f"dropped by `{rule.text}` ({chain})")]
    if action == "return":
        return _end_of(chain, policy)
    if action == "continue":
        return _chain_paths(ruleset, chain, packet, index + 1, policy, depth)
    if action.startswith(("jump:", "goto:")):
        target = action.split(":", 1)[1]
        if target not in ruleset.chains:
            return [("unknown", f"cannot tell: `{rule.text}` goes to a chain not listed")]
        inner = _chain_paths(ruleset, target, packet, 0, None, depth + 1)
        out: list[tuple[Outcome, str]] = []
        for answer, reason in inner:
            if answer == "return":
                if action.startswith("goto:"):
                    out.extend(_end_of(chain, policy))
                else:
                    out.extend(_chain_paths(ruleset, chain, packet, index + 1, policy, depth))
            else:
                out.append((answer, reason))
        return out
    return [("unknown", f"cannot tell what `{rule.text}` does")]


def _end_of(chain: str, policy: str | None) -> list[tuple[Outcome, str]]:
    if policy is None:
        return [("return", "")]
    return [("pass", "")] if policy == "accept" else [("drop", f"{chain} policy {policy}")]


def _pf_paths(rules: Sequence[Rule], packet: Packet) -> list[tuple[Answer, str]]:
    """pf: the last matching rule decides, unless a `quick` one matched first; none: pass."""
    paths: list[tuple[Answer, str, int]] = [("pass", "no rule blocks it (pf passes by default)", 0)]
    for index, rule in enumerate(rules):
        nxt: list[tuple[Answer, str, int]] = []
        for answer, reason, done in paths:
            if done or rule.action == "none":
                nxt.append((answer, reason, done))
                continue
            matched = _each_match(rule, packet)
            if matched is False:
                nxt.append((answer, reason, 0))
                continue
            decided, why = _pf_decide(rule, index)
            if matched is None:
                nxt.append((answer, reason, 0))
                why = f"cannot tell whether `{rule.text}` applies"
            nxt.append((decided, why, 1 if rule.quick else 0))
        paths = nxt
        if len(paths) > _BRANCH_LIMIT:
            break
    return [(a, r) for a, r, _ in paths]


def _pf_decide(rule: Rule, index: int) -> tuple[Answer, str]:
    if rule.action == "accept":
        return ("pass", f"passed by `{rule.text}`")
    if rule.action == "drop":
        return ("drop", f"blocked by `{rule.text}` (rule {index + 1})")
    return ("unknown", f"cannot tell what `{rule.text}` does (its rules are not listed)")


# --- matches -------------------------------------------------------------------------------


def _address_in(values: Iterable[str]) -> Callable[[str], Tri]:
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value, strict=False))
        except ValueError:
            return lambda _address: None
    return lambda address: any(ipaddress.ip_address(address) in net for net in networks)


def _negate(match: Match) -> Match:
    def negated(packet: Packet) -> Tri:
        value = match(packet)
        return None if value is None else not value

    return negated


def _unknown(_packet: Packet) -> Tri:
    return None


# --- nftables (`nft -j list ruleset`) -----------------------------------------------------------


def parse_nft_json(text: str) -> Ruleset:
    """The IPv4 input path of an nftables ruleset: the filter chains hooked at prerouting and
    input in the ip and inet families, by hook then priority. ValueError when not nft JSON."""
    document = json.loads(text)
    items = document.get("nftables") if isinstance(document, dict) else None
    if not isinstance(items, list):
        raise ValueError("not the JSON of `nft -j list ruleset`")
    chains: dict[str, list[Rule]] = {}
    hooked: list[tuple[int, int, str, str]] = []
    elsewhere: dict[str, int] = {}  # netdev and bridge chains: rules in each
    order = {"prerouting": 0, "input": 1}
    for item in items:
        if not isinstance(item, dict):
            continue
        chain = item.get("chain")
        if isinstance(chain, dict) and chain.get("family") in ("ip", "inet"):
            name = _chain_id(chain)
            chains.setdefault(name, [])
            hook = chain.get("hook")
            if hook in order and chain.get("type", "filter") == "filter":
                prio = chain.get("prio", 0)
                hooked.append(
                    (
                        order[str(hook)],
                        prio if isinstance(prio, int) else 0,
                        name,
                        str(chain.get("policy", "accept")),
                    )
                )
        rule = item.get("rule")
        if isinstance(rule, dict) and rule.get("family") in ("ip", "inet"):
            chains.setdefault(_chain_id(rule, "chain"), []).append(_nft_rule(rule))
        elif isinstance(rule, dict) and rule.get("family") in ("netdev", "bridge"):
            name = _chain_id(rule, "chain")
            elsewhere[name] = elsewhere.get(name, 0) + 1
    hooked.sort()
    return Ruleset(
        "nft",
        {name: tuple(rules) for name, rules in chains.items()},
        tuple((name, policy) for _, _, name, policy in hooked),
        "nft -j list ruleset",
        tuple(sorted(name for name, count in elsewhere.items() if count)),
    )


def _chain_id(item: Mapping[str, Any], key: str = "name") -> str:
    return f"{item.get('family')} {item.get('table')} {item.get(key)}"


def _nft_rule(rule: Mapping[str, Any]) -> Rule:
    matches: list[Match] = []
    action = "continue"
    words: list[str] = []
    family, table = rule.get("family"), rule.get("table")
    for expr in rule.get("expr") or ():
        if not isinstance(expr, dict) or len(expr) != 1:
            matches.append(_unknown)
            continue
        ((key, value),) = expr.items()
        if key == "match" and isinstance(value, dict):
            match, word = _nft_match(value)
            matches.append(match)
            words.append(word)
        elif key in ("accept", "drop", "reject", "return", "continue"):
            action = "drop" if key == "reject" else str(key)
            words.append(key)
        elif key in ("jump", "goto") and isinstance(value, dict):
            action = f"{key}:{family} {table} {value.get('target')}"
            words.append(f"{key} {value.get('target')}")
        elif key in ("counter", "log", "limit", "comment", "notrack"):
            continue  # `limit` lets a single echo through
        else:
            action = "unknown" if action == "continue" else action
            matches.append(_unknown)
            words.append(key)
    return Rule(tuple(matches), action, " ".join(words) or "(empty rule)")


def _right_values(right: Any) -> list[Any] | None:
    if isinstance(right, dict) and "set" in right:
        values = right["set"]
        return list(values) if isinstance(values, list) else None
    if isinstance(right, list):
        return list(right)
    return [right]


def _nft_match(match: Mapping[str, Any]) -> tuple[Match, str]:
    op, left, right = match.get("op"), match.get("left"), match.get("right")
    word = f"{_describe(left)} {op} {_describe(right)}"
    values = _right_values(right)
    if op not in ("==", "!=", "in") or not isinstance(left, dict) or values is None:
        return _unknown, word
    test = _nft_test(left, values)
    if test is None:
        return _unknown, word
    return (_negate(test) if op == "!=" else test), word


def _nft_test(left: Mapping[str, Any], values: list[Any]) -> Match | None:
    meta, payload, ct = left.get("meta"), left.get("payload"), left.get("ct")
    if isinstance(meta, dict):
        key = meta.get("key")
        if key in ("iifname", "iif"):
            names = [str(v) for v in values]
            return lambda p: any(fnmatch.fnmatchcase(p.iif, n) for n in names)
        if key == "l4proto":
            return _protocol_test(values)
        if key == "nfproto":
            return lambda p: "ipv4" in values
        return None
    if isinstance(ct, dict) and ct.get("key") == "state":
        return lambda p: "new" in values  # the packets asked about open a connection
    if isinstance(payload, dict):
        proto, field_name = payload.get("protocol"), payload.get("field")
        if proto == "ip" and field_name in ("saddr", "daddr"):
            nets = _nft_networks(values)
            if nets is None:
                return None
            tester = _address_in(nets)
            return lambda p: tester(p.saddr if field_name == "saddr" else p.daddr)
        if proto == "ip" and field_name == "protocol":
            return _protocol_test(values)
        if proto == "icmp" and field_name == "type":
            types = [ICMP_TYPES.get(v, v) if isinstance(v, str) else v for v in values]
            if not all(isinstance(t, int) for t in types):
                return None
            return lambda p: p.protocol == 1 and p.icmp_type in types
        if proto in ("udp", "tcp", "th") and field_name == "dport":
            ports = _ports(values)
            if ports is None:
                return None
            number = PROTOCOLS.get(str(proto))
            return lambda p: (
                (number is None or p.protocol == number)
                and (p.dport is not None and any(lo <= p.dport <= hi for lo, hi in ports))
            )
    return None


def _protocol_test(values: list[Any]) -> Match | None:
    numbers = [PROTOCOLS.get(v) if isinstance(v, str) else v for v in values]
    if not all(isinstance(n, int) for n in numbers):
        return None
    return lambda p: p.protocol in numbers


def _nft_networks(values: list[Any]) -> list[str] | None:
    nets = []
    for value in values:
        if isinstance(value, str):
            nets.append(value)
        elif isinstance(value, dict) and isinstance(value.get("prefix"), dict):
            nets.append(f"{value['prefix'].get('addr')}/{value['prefix'].get('len')}")
        elif isinstance(value, dict) and isinstance(value.get("range"), list):
            return None
        else:
            return None
    return nets


def _ports(values: list[Any]) -> list[tuple[int, int]] | None:
    ports = []
    for value in values:
        if isinstance(value, int):
            ports.append((value, value))
        elif isinstance(value, dict) and isinstance(value.get("range"), list):
            lo, hi = value["range"]
            if not (isinstance(lo, int) and isinstance(hi, int)):
                return None
            ports.append((lo, hi))
        else:
            return None
    return ports


def _describe(value: Any) -> str:
    if isinstance(value, dict) and len(value) == 1:
        ((key, inner),) = value.items()
        if isinstance(inner, dict):
            return " ".join([key, *(str(v) for v in inner.values())])
        return f"{key} {inner}"
    return json.dumps(value) if not isinstance(value, str) else value


# --- pf (`pfctl -sr`) -------------------------------------------------------------------------

_PF_OPTIONS_IGNORED = {
    "keep", "modulate", "synproxy", "state", "no", "flags", "label", "tag", "allow-opts",
    "set", "prio", "queue", "once", "max-mss", "scrub", "min-ttl", "random-id", "reassemble",
    "tcp", "fragment", "divert-reply",
}  # fmt: skip
_PF_OPTIONS_UNKNOWN = {
    "user", "group", "tagged", "probability", "received-on", "rtable", "rdomain", "os",
    "route-to", "reply-to", "dup-to", "divert-to", "divert-packet", "nat-to", "rdr-to",
    "binat-to", "af-to", "max-pkt-rate",
}  # fmt: skip


def parse_pf_rules(text: str, wan: str) -> Ruleset:
    """The rules `pfctl -sr` prints, for packets arriving on the WAN `wan` (whose addresses
    `self` and `(wan)` mean). A line it cannot read becomes a rule it cannot tell about."""
    rules = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        rules.append(_pf_rule(line, wan))
    return Ruleset("pf", {"": tuple(rules)}, (), "pfctl -sr")


def _pf_tokens(line: str) -> list[str]:
    return re.findall(r'"[^"]*"|[{}()<>!,]|[^\s{}()<>!,"]+', line)


def _pf_rule(line: str, wan: str) -> Rule:
    tokens = _pf_tokens(line)
    head = tokens[0] if tokens else ""
    if head not in ("pass", "block", "match", "anchor"):
        return Rule((_unknown,), "unknown", line)  # antispoof and the like: not expected here
    matches: list[Match] = []
    action = {"pass": "accept", "block": "drop", "match": "none", "anchor": "unknown"}[head]
    quick = False
    i = 1
    if head == "anchor" and i < len(tokens) and tokens[i].startswith('"'):
        i += 1
    while i < len(tokens):
        word = tokens[i]
        if word in ("drop", "return", "return-rst", "return-icmp", "return-icmp6", "log"):
            i += 1
            if i < len(tokens) and tokens[i] == "(" and ")" in tokens[i:]:
                i = tokens.index(")", i) + 1
            continue
        if word == "in":
            i += 1
            continue
        if word == "out":
            matches.append(lambda _p: False)  # the packets asked about come in
            i += 1
            continue
        if word == "quick":
            quick = True
            i += 1
            continue
        if word == "on":
            negated, name, i = _pf_negated_word(tokens, i + 1)
            test = _pf_interface(name, wan)
            matches.append(_negate(test) if negated else test)
            continue
        if word == "inet":
            i += 1
            continue
        if word == "inet6":
            matches.append(lambda _p: False)
            i += 1
            continue
        if word == "proto":
            values, i = _pf_list(tokens, i + 1)
            numbers = [PROTOCOLS.get(v) if not v.isdigit() else int(v) for v in values]
            matches.append(_in_field(numbers, "protocol"))
            continue
        if word == "all":
            i += 1
            continue
        if word in ("from", "to"):
            match, i = _pf_host(tokens, i + 1, wan, source=word == "from")
            matches.append(match)
            continue
        if word == "icmp-type":
            values, i = _pf_list(tokens, i + 1)
            types = [ICMP_TYPES.get(v) if not v.isdigit() else int(v) for v in values]
            matches.append(_both(_in_field([1], "protocol"), _in_field(types, "icmp_type")))
            if i < len(tokens) and tokens[i] == "code":
                matches.append(_unknown)
                i += 2
            continue
        if word == "icmp6-type":
            matches.append(lambda _p: False)  # IPv6 only
            _, i = _pf_list(tokens, i + 1)
            continue
        if word in _PF_OPTIONS_UNKNOWN:
            matches.append(_unknown)
            i += 2
            continue
        if word in _PF_OPTIONS_IGNORED or word == "(":
            i = _skip_option(tokens, i)
            continue
        matches.append(_unknown)  # a word it does not know: this rule cannot be read
        i += 1
    return Rule(tuple(matches), action, line, quick)


def _in_field(values: list[int | None], name: str) -> Match:
    """The packet's `name` is one of `values`; cannot tell when a value was not understood."""
    if any(v is None for v in values):
        return _unknown
    return lambda p: getattr(p, name) in values


def _skip_option(tokens: list[str], i: int) -> int:
    i += 1
    while i < len(tokens) and tokens[i] == "(":
        i = tokens.index(")", i) + 1 if ")" in tokens[i:] else len(tokens)
    return i


def _pf_negated_word(tokens: list[str], i: int) -> tuple[bool, str, int]:
    negated = i < len(tokens) and tokens[i] == "!"
    if negated:
        i += 1
    return negated, tokens[i] if i < len(tokens) else "", i + 1


def _pf_list(tokens: list[str], i: int) -> tuple[list[str], int]:
    if i < len(tokens) and tokens[i] == "{":
        end = tokens.index("}", i) if "}" in tokens[i:] else len(tokens)
        return [t for t in tokens[i + 1 : end] if t != ","], end + 1
    return ([tokens[i]] if i < len(tokens) else []), i + 1


def _pf_interface(name: str, wan: str) -> Match:
    if name == wan or name == "egress":  # egress: the group of the default route's interface
        return lambda _p: True
    if name and name[-1].isdigit():
        return lambda _p: False  # another interface
    return _unknown  # an interface group it cannot see into


def _pf_host(tokens: list[str], i: int, wan: str, *, source: bool) -> tuple[Match, int]:
    negated = i < len(tokens) and tokens[i] == "!"
    if negated:
        i += 1
    word = tokens[i] if i < len(tokens) else ""
    test: Callable[[Packet], Tri]
    if word == "any" or (word == "self" and not source):
        test, i = (lambda _p: True), i + 1
    elif word == "(":
        name = tokens[i + 1] if i + 1 < len(tokens) else ""
        end = tokens.index(")", i) if ")" in tokens[i:] else len(tokens)
        i = end + 1
        test = (lambda _p: True) if (name == wan and not source) else _unknown
    elif word == "<":
        end = tokens.index(">", i) if ">" in tokens[i:] else len(tokens)
        test, i = _unknown, end + 1  # a table: its contents are not listed
    elif word == "{":
        values, i = _pf_list(tokens, i)
        check = _address_in(values)
        test = _field_test(check, source)
    else:
        check = _address_in([word])
        test, i = _field_test(check, source), i + 1
    if i < len(tokens) and tokens[i] == "port":
        port_test, i = _pf_port(tokens, i + 1)
        if not source:
            inner = test
            test = _both(inner, port_test)
        else:
            test = _both(test, lambda _p: None)  # source ports: not known for these packets
    return (_negate(test) if negated else test), i


def _field_test(check: Callable[[str], Tri], source: bool) -> Match:
    return lambda p: check(p.saddr if source else p.daddr)


def _both(a: Match, b: Match) -> Match:
    def both(packet: Packet) -> Tri:
        x, y = a(packet), b(packet)
        if x is False or y is False:
            return False
        return None if x is None or y is None else True

    return both


def _pf_port(tokens: list[str], i: int) -> tuple[Match, int]:
    op = "="
    if i < len(tokens) and tokens[i] in ("=", "!=", "<", ">", "<=", ">="):
        op, i = tokens[i], i + 1
    values, i = _pf_list(tokens, i)
    if op != "=" or not all(v.isdigit() for v in values):
        return _unknown, i
    ports = [int(v) for v in values]
    return (lambda p: p.dport is not None and p.dport in ports), i
