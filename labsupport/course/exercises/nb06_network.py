"""Notebook 06 (network namespace): checks that ask the kernel, from inside and from the host.

The learner builds in namespaces with fixed lab names: ``labex06a`` and ``labex06b`` joined
by one cable (exercise 1), ``labex06c`` and ``labex06d`` joined through a router namespace
``labex06r`` (exercise 2), and a server of ``labex06b``'s published on the host's
127.0.0.1:8086 (exercise 3). Each check reads their links over netlink and pings or fetches
from *inside* them - the host only ever talks to its own loopback. Exercise 3 times the
published port against the server's own loopback and shows the learner's prediction beside.
"""
from __future__ import annotations

import ipaddress
import statistics
import time
import urllib.request

from labsupport import net
from labsupport.course import predictions
from labsupport.course.exercises import Verdict, exercise, hint, passed
from labsupport.kernel.errors import LabError
from labsupport.net import publish as portproxy
from labsupport.net import run as netrun
from labsupport.process import run_function

#: The namespaces the exercises use, and the host port exercise 3 publishes on.
FIRST, SECOND = "labex06a", "labex06b"
LEFT, ROUTER, RIGHT = "labex06c", "labex06r", "labex06d"
EXERCISE_NAMESPACES = (FIRST, SECOND, LEFT, ROUTER, RIGHT)
HOST_PORT = 8086
#: Requests each way of exercise 3's timing.
REQUESTS = 30


def _missing(*names: str) -> Verdict | None:
    for name in names:
        if name not in net.lab_namespaces():
            return hint(f"There is no network namespace {name} yet (`ip netns` does not list it). "
                        "A name that starts with 'lab' is kept exactly as you give it.",
                        ko=f"아직 {name} 네트워크 네임스페이스가 없습니다(`ip netns`에 나오지 "
                           "않습니다). 'lab'으로 시작하는 이름은 준 그대로 유지됩니다.")
    return None


def _cables(namespace: str) -> list[tuple[net.Link, ipaddress.IPv4Interface]]:
    """Each (link, IPv4 address) of the namespace's links besides lo that are up."""
    return [(link, address) for link in net.links(namespace)
            if link.kind != "loopback" and link.up
            for address in map(ipaddress.ip_interface, link.addresses) if address.version == 4]


@exercise("06", 1, f"{FIRST} and {SECOND} joined by one cable, nothing on the host")
def one_cable() -> Verdict:
    missing = _missing(FIRST, SECOND)
    if missing:
        return missing
    direct = [(link, address) for link, address in _cables(FIRST)
              if link.peer is not None and link.peer.namespace == SECOND]
    if not direct:
        ends = [f"{link.name} -> {link.peer}" for link, _ in _cables(FIRST) if link.peer]
        return hint(f"{FIRST} has no cable (veth) that is up, has an address and whose other end "
                    f"is in {SECOND}" + (f" - its cables lead to {', '.join(ends)}" if ends else "")
                    + ". Above, every cable had one end on the host: does it have to?",
                    ko=f"{FIRST}에는 켜져 있고, 주소가 있고, 반대쪽 끝이 {SECOND}에 있는 케이블(veth)이 없습니다"
                       + (f" - 케이블들은 {', '.join(ends)}(으)로 이어집니다" if ends else "")
                       + ". 위에서는 모든 케이블의 한쪽 끝이 호스트에 있었는데, 꼭 그래야 할까요?")
    link, mine = direct[0]
    theirs = [address for other, address in _cables(SECOND) if other.name == link.peer.name]
    if not theirs:
        return hint(f"{SECOND}'s end, {link.peer.name}, is down or has no IPv4 address.",
                    ko=f"{SECOND} 쪽 끝인 {link.peer.name}이(가) 꺼져 있거나 IPv4 주소가 없습니다.")
    for here, there in ((FIRST, theirs[0]), (SECOND, mine)):
        result = netrun.ping(str(there.ip), here)
        if not result.ok:
            return hint(f"{here} cannot ping {there.ip}: are both ends up, and does each side "
                        "have a route to the other's address?",
                        ko=f"{here}에서 {there.ip}로 ping이 가지 않습니다: 양쪽 끝이 다 켜져 "
                           "있나요? 각자 상대 주소로 가는 경로가 있나요?")
    return passed(f"{FIRST} ({mine}) and {SECOND} ({theirs[0]}) ping each other over one veth "
                  "pair, both ends inside namespaces: no bridge, no host link - the host's "
                  "`ip link` does not even show the cable.",
                  ko=f"{FIRST}({mine})와 {SECOND}({theirs[0]})가 veth 한 쌍으로 서로 ping을 "
                     "주고받습니다. 양쪽 끝이 모두 네임스페이스 안에 있습니다: 브리지도, 호스트 쪽 "
                     "링크도 없고 - 호스트의 `ip link`에는 케이블이 보이지도 않습니다.")


def _forwarding(namespace: str) -> bool:
    got = netrun.run_in(namespace, ["busybox", "cat", "/proc/sys/net/ipv4/ip_forward"])
    return got.stdout.strip() == "1"


@exercise("06", 2, f"{LEFT} reaches {RIGHT} in another subnet, through {ROUTER}")
def through_a_router() -> Verdict:
    missing = _missing(LEFT, ROUTER, RIGHT)
    if missing:
        return missing
    left, right = _cables(LEFT), _cables(RIGHT)
    if not left or not right:
        return hint(f"{LEFT if not left else RIGHT} has no link besides lo that is up and has an "
                    "IPv4 address.",
                    ko=f"{LEFT if not left else RIGHT}에는 lo 말고는 켜져 있고 IPv4 주소가 있는 "
                       "링크가 없습니다.")
    shared = {a.network for _, a in left} & {b.network for _, b in right}
    if shared:
        return hint(f"{LEFT} and {RIGHT} both have addresses in {shared.pop()}: put them in two "
                    f"different subnets, so that only {ROUTER} can join them.",
                    ko=f"{LEFT}와 {RIGHT}의 주소가 둘 다 {shared.pop()} 안에 있습니다: 서로 다른 두 "
                       f"서브넷에 두어서 {ROUTER}만 둘을 이어 줄 수 있게 하세요.")
    target = right[0][1]
    result = netrun.ping(str(target.ip), LEFT)
    if not result.ok:
        way = net.route_to(str(target.ip), LEFT)
        return hint(f"{LEFT} cannot ping {target.ip} (its way there: {way}). A packet needs a "
                    "route on each side - there and back - and a router must be willing to pass "
                    "on what is not addressed to itself.",
                    ko=f"{LEFT}에서 {target.ip}로 ping이 가지 않습니다(가는 길: {way}). 패킷에는 "
                       "양쪽 모두 - 갈 때와 올 때 - 경로가 필요하고, 라우터는 자기 주소로 오지 "
                       "않은 패킷도 기꺼이 넘겨줘야 합니다.")
    if not _forwarding(ROUTER):
        return hint(f"{LEFT} reaches {target.ip}, but {ROUTER} does not forward: is {RIGHT} "
                    f"cabled to {LEFT} some other way?",
                    ko=f"{LEFT}에서 {target.ip}에 닿기는 하지만, {ROUTER}는 포워딩하지 않습니다: "
                       f"{RIGHT}가 다른 길로 {LEFT}에 연결되어 있지 않나요?")
    return passed(f"{LEFT} pings {target.ip} in {target.network} through {ROUTER} "
                  f"({net.route_to(str(target.ip), LEFT)}); {ROUTER} forwards because its own "
                  "copy of net.ipv4.ip_forward is 1 - a setting each network namespace has for "
                  "itself, as Docker switches on the host's.",
                  ko=f"{LEFT}가 {ROUTER}를 거쳐 {target.network}의 {target.ip}에 "
                     f"ping합니다({net.route_to(str(target.ip), LEFT)}). {ROUTER}가 포워딩하는 것은 "
                     "자기 net.ipv4.ip_forward 값이 1이기 때문입니다 - 네트워크 네임스페이스마다 "
                     "따로 가진 설정이고, Docker는 호스트의 이 값을 켭니다.")


def _per_request(url: str, count: int) -> float:
    """Median seconds of one HTTP request to ``url``, each on a new connection."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    times = []
    for _ in range(count):
        start = time.perf_counter()
        with opener.open(url, timeout=5) as answer:
            answer.read()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@exercise("06", 3, "Predict what the published port costs per request, then time it")
def published_port_cost() -> Verdict:
    guess = predictions.required("06", 3, "for how much longer a request through the published "
                                 "port takes than one made inside the namespace",
                                 ko="공개된 포트를 거친 요청이 네임스페이스 안에서 한 요청보다 "
                                    "얼마나 더 오래 걸리는지")
    if isinstance(guess, Verdict):
        return guess
    missing = _missing(SECOND)
    if missing:
        return missing
    found = [p for p in portproxy.published() if p.host_port == HOST_PORT]
    if not found or found[0].namespace != SECOND:
        return hint(f"127.0.0.1:{HOST_PORT} does not lead into {SECOND} yet: publish its server "
                    "there, as the notebook published blue's.",
                    ko=f"127.0.0.1:{HOST_PORT}는 아직 {SECOND} 안으로 이어지지 않습니다: 노트북에서 "
                       f"blue의 서버를 공개했던 것처럼 {SECOND}의 서버를 그곳에 공개하세요.")
    servers = [pid for pid in netrun.processes_in(SECOND) if netrun.listening_on(pid, found[0].port)]
    if not servers:
        return hint(f"127.0.0.1:{HOST_PORT} leads to port {found[0].port} of {SECOND}, but no "
                    f"program listens there inside {SECOND}.",
                    ko=f"127.0.0.1:{HOST_PORT}는 {SECOND}의 포트 {found[0].port}로 이어지지만, "
                       f"{SECOND} 안에서 그 포트를 듣고 있는 프로그램이 없습니다.")
    inside_url = f"http://127.0.0.1:{found[0].port}/"
    try:
        through = _per_request(f"http://127.0.0.1:{HOST_PORT}/", REQUESTS)
        inside = run_function(_per_request, inside_url, REQUESTS, enter=servers[0],
                              enter_namespaces=["net"])
    except (OSError, LabError) as err:
        return hint(f"A request did not get an answer ({err}): does the server answer every "
                    "request, and is the published port still there?",
                    ko=f"응답을 받지 못한 요청이 있습니다({err}): 서버가 모든 요청에 답하나요? "
                       "공개한 포트가 아직 있나요?")
    return passed(predictions.beside(
        guess, f"{through * 1e3:.2f} ms per request through 127.0.0.1:{HOST_PORT}, "
        f"{inside * 1e3:.2f} ms inside {SECOND} on its own loopback - {through / inside:.1f}x "
        f"(median of {REQUESTS} each)") + " The proxy accepts every connection, opens a second one "
        "inside and copies the bytes in user space: two connections per request. Docker's DNAT "
        "rules exist so that most traffic skips docker-proxy.",
                  ko=predictions.beside(
                      guess, f"127.0.0.1:{HOST_PORT}를 거치면 요청당 {through * 1e3:.2f} ms, "
                             f"{SECOND} 안에서 자기 루프백으로는 {inside * 1e3:.2f} ms - "
                             f"{through / inside:.1f}배 (각각 {REQUESTS}번의 중앙값)", "ko")
                     + " 프록시는 연결마다 받아서 안쪽에 두 번째 연결을 열고, 바이트를 사용자 "
                       "공간에서 복사합니다: 요청 하나에 연결이 둘입니다. Docker의 DNAT 규칙은 "
                       "대부분의 트래픽이 docker-proxy를 건너뛰게 하려고 있는 것입니다.")


def reset() -> list[str]:
    """What notebook 06's exercises leave besides the exercise directory, removed (``reset 06``)."""
    from labsupport.net import run as netrun

    done = []
    if any(p.host_port == HOST_PORT for p in portproxy.published()):
        portproxy.unpublish(HOST_PORT)
        done.append(f"unpublished 127.0.0.1:{HOST_PORT}")
    present = [ns for ns in EXERCISE_NAMESPACES if ns in net.lab_namespaces()]
    if present:
        rows = netrun.clean_up(namespaces=present).rows
        done += [f"{what}: {removed}" for what, removed in rows if removed != "none"]
    return done
