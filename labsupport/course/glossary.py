"""Every term of the seed notes and of the lab, defined in Korean and in English, each tied
to the cell that shows it running.

The notes' author reads Korean; the notebooks carry each seed term's Korean word
in parentheses at first use. This is the single list behind notebook G, so tests
can hold it to the seed (every seed term's Korean word really occurs there), to
the notebooks (every notebook named exists and shows the word) and to the cells
(every link names a code cell that exists).

Two lists: ``TERMS`` are the notes' own words, written exactly as the notes write
them (커널드라이브, not 커널 드라이버 - the definition says which is meant);
``LAB_TERMS`` are the words the lab adds (chroot, veth, whiteout ...), with the
Korean word a Korean engineer would use.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from labsupport.course import cells, seedmap
from labsupport.kernel.tables import Table

NOTEBOOKS = cells.NOTEBOOKS


@dataclass(frozen=True)
class Term:
    english: str
    korean: str                 # seed terms: exactly as the notes write it
    shown: str                  # "NB#cell-id": the code cell that shows it running
    ko: str                     # one line, in Korean
    en: str                     # the same line, in English
    also: tuple[str, ...] = ()  # other notebooks that use the word
    notebooks: tuple[str, ...] = field(init=False)  # where the word is shown: "00".."13", "A"

    def __post_init__(self) -> None:
        first = cells.CellRef.parse(self.shown).notebook
        object.__setattr__(self, "notebooks", (first, *(n for n in self.also if n != first)))


T = Term

TERMS: tuple[Term, ...] = (
    # -- 컨테이너 ---------------------------------------------------------------------------
    T("container", "컨테이너", "00#02d2bbe6",
      "프로그램과 그 실행환경을 한데 묶어, 네임스페이스와 cgroup으로 나머지 시스템과 떼어 놓고 실행하는 프로세스 묶음.",
      "One or more processes run with their own files, kept apart from the rest of the system by "
      "namespaces and cgroups.", ("01", "04")),
    T("abstraction", "추상화", "00#02d2bbe6",
      "속의 차이를 감추고 겉모양을 하나로 맞추는 것. 어떤 프로그램이든 똑같은 상자(컨테이너)로 다루게 된다.",
      "Hiding what differs inside behind one outward shape: any program becomes the same kind of box."),
    T("execution environment", "실행환경", "09#de1c49ac",
      "프로그램이 돌아가는 데 필요한 모든 것: 라이브러리, 설정 파일, 환경 변수, 런타임.",
      "Everything a program needs to run: libraries, configuration files, environment variables, "
      "its runtime."),
    T("same interface", "동일한 인터페이스", "00#02d2bbe6",
      "안에 든 프로그램이 무엇이든 만들고, 시작하고, 멈추고, 옮기는 방법이 똑같다는 뜻.",
      "Every program, whatever it is, is created, started, stopped and shipped the same way."),
    T("deployment", "배포", "11#e5473f36",
      "만든 프로그램을 실제로 돌아갈 서버에 올리고 실행하는 일.",
      "Putting a program onto the machines where it will run, and starting it there.", ("00",)),
    T("WAS (web application server)", "WAS서버", "11#a2f1755c",
      "웹 요청을 받아 애플리케이션 코드를 실행하고 답하는 서버. 이 실습에서는 lab-web 이미지.",
      "A web application server: it answers web requests by running application code (the lab-web "
      "image here)."),
    T("DB server", "DB서버", "11#26c6f298",
      "데이터를 저장하고 질의에 답하는 서버. 이 실습에서는 redis.",
      "A server that stores data and answers queries (redis here)."),
    T("message-queue server", "메시지 큐서버", "11#26c6f298",
      "프로그램끼리 주고받는 메시지를 줄 세워 보관했다가 받을 쪽에 넘겨 주는 서버. 이 실습에서는 beanstalkd.",
      "A server that keeps messages in a queue until another program takes them (beanstalkd here).",
      ("00",)),
    T("on-premises server", "OP서버", "00#f61f20f8",
      "회사가 직접 사서 자기 건물이나 데이터센터에서 운영하는 서버(on-premises). AWS, Azure, GCP 같은 클라우드와 대비된다.",
      "A server an organisation owns and runs itself (on-premises), as opposed to a cloud such as "
      "AWS, Azure or GCP."),
    T("virtualization technology", "가상화 기술", "13#13-05",
      "물리 머신 한 대 위에 서로 분리된 실행 환경을 여러 개 만드는 기술. 가상머신과 컨테이너가 모두 여기에 든다.",
      "Making several separate execution environments on one physical machine; VMs and containers "
      "are both kinds.", ("A",)),
    # -- 리눅스 컨테이너(LXC) ------------------------------------------------------------------
    T("Linux container (LXC)", "리눅스 컨테이너", "00#f12f7d33",
      "리눅스 커널의 네임스페이스와 cgroup으로 만든 컨테이너. LXC는 이를 만드는 여러 도구 가운데 하나다.",
      "A container made from the Linux kernel's namespaces and cgroups; LXC is one of the toolsets "
      "that make them.", ("A",)),
    T("namespace: control over isolated spaces", "독립된 공간에 대한 제어", "02#02-11",
      "네임스페이스: 프로세스가 무엇을 보는지(마운트, PID, 네트워크, IPC, 호스트네임, 사용자)를 따로 나누는 커널 기능.",
      "Namespaces: the kernel feature that decides what a process sees - its own mounts, PIDs, "
      "network, IPC, hostname and users.", ("00",)),
    T("filesystem mount", "파일시스템 마운트", "05#79f8366d",
      "파일시스템을 디렉터리 트리의 한 지점에 붙이는 것. 마운트 네임스페이스마다 마운트 표가 따로 있다.",
      "Attaching a filesystem at a point of the directory tree; each mount namespace keeps its own "
      "table of them."),
    T("mount", "마운트", "05#3ab10967",
      "파일시스템이나 이미 있는 디렉터리(bind 마운트)를 어떤 경로에 붙여 보이게 하는 일.",
      "Attaching a filesystem - or, with a bind mount, a directory that already exists - at a path.",
      ("01",)),
    T("process", "프로세스", "04#04-08",
      "실행 중인 프로그램. 커널은 PID라는 번호로 부르고, 메모리와 열린 파일을 따로 준다.",
      "A running program: the kernel names it by a PID and gives it its own memory and open files.",
      ("02", "05")),
    T("process space", "프로세스 공간", "04#04-07",
      "프로세스 번호(PID)를 매기는 범위. PID 네임스페이스마다 1번부터 다시 센다.",
      "The range in which process IDs are counted; each PID namespace starts again at 1.", ("00",)),
    T("duplicate port binding", "중복 포트바인딩", "06#06-29",
      "두 프로그램이 같은 포트 번호를 쓰려는 것. 한 네트워크 네임스페이스 안에서는 실패하고, 네임스페이스가 다르면 된다.",
      "Two programs binding the same port: it fails within one network namespace and works across two."),
    T("communication channel", "통신통로", "03#03-09",
      "프로세스끼리 데이터를 주고받는 커널 객체(공유 메모리, 메시지 큐). IPC 네임스페이스마다 따로 있다.",
      "A kernel object that processes exchange data through (shared memory, message queues); one set "
      "per IPC namespace."),
    T("hostname", "호스트네임", "02#02-05",
      "머신의 이름. UTS 네임스페이스마다 따로 가질 수 있다.",
      "The machine's name; each UTS namespace can have its own.", ("00",)),
    T("user", "사용자", "07#32b46691",
      "커널이 uid와 gid 번호로 구분하는 계정. 사용자 네임스페이스는 안쪽 uid를 바깥의 다른 uid로 바꿔 적는다.",
      "An account, known to the kernel by its uid and gid; a user namespace maps uids inside to "
      "other uids outside.", ("01",)),
    T("cgroups: control over separate resources", "독립된 자원에 대한 제어", "08#6de77417",
      "cgroup: 프로세스 묶음이 쓸 수 있는 자원(메모리, CPU, I/O, 프로세스 수, 장치)을 제한하고 재는 커널 기능.",
      "cgroups: the kernel feature that limits and measures what a group of processes may use - "
      "memory, CPU, I/O, processes, devices.", ("00",)),
    T("resource", "리소스", "08#6d4dddfb",
      "커널이 프로세스들에게 나눠 주는 것: 메모리, CPU 시간, 디스크 I/O, 프로세스 수, 장치.",
      "What the kernel hands out to processes: memory, CPU time, disk I/O, process slots, devices."),
    T("Linux instance", "리눅스 인스턴스", "00#02d2bbe6",
      "실행 중인 리눅스 커널 하나와 그 위의 시스템. 컨테이너들은 이것 하나를 함께 쓴다.",
      "One running Linux kernel and the system on it; all containers of a host share one."),
    T("virtualization layer", "가상화 계층", "00#02d2bbe6",
      "게스트와 실제 하드웨어 사이에서 가상의 하드웨어를 보여 주는 층(하이퍼바이저). 컨테이너에는 이 층이 없다.",
      "The layer that shows a guest virtual hardware (the hypervisor); containers have none."),
    T("container runtime", "컨테이너 런타임", "A#e89f1d6d",
      "config.json을 읽고 커널을 호출해 컨테이너를 실제로 만드는 프로그램(runc, crun).",
      "The program that reads a container's config.json and makes the kernel calls that create it "
      "(runc, crun).", ("02", "03")),
    # -- chroot --------------------------------------------------------------------------------
    T("root directory", "루트 디렉토리", "01#18d79c90",
      "경로 '/'가 가리키는 디렉터리. chroot와 pivot_root가 이것을 바꾼다.",
      "The directory a process's '/' resolves to; chroot and pivot_root change it.", ("04",)),
    T("library", "라이브러리", "01#848332c7",
      "여러 프로그램이 함께 쓰는 코드 파일(.so). 프로그램이 시작될 때 로더가 불러온다.",
      "A file of shared code (.so) that the loader maps into a program when it starts."),
    T("system and related libraries", "시스템 라이브러리와 관련 라이브러리", "01#af8e8cb2",
      "libc와 로더(ld-linux)처럼 거의 모든 프로그램에 필요한 라이브러리, 그리고 그 프로그램만 쓰는 라이브러리.",
      "The libraries nearly every program needs (libc, the loader ld-linux) and those one program "
      "adds."),
    # -- 하이퍼바이징 ---------------------------------------------------------------------------
    T("hypervising (running VMs under a hypervisor)", "하이퍼바이징", "12#fb310dfa",
      "하이퍼바이저로 가상머신을 돌리는 일을 노트가 부르는 말. 보통은 '하이퍼바이저 기반 가상화'라고 한다.",
      "The notes' word for running virtual machines under a hypervisor - usually called "
      "hypervisor-based virtualization."),
    T("hypervisor", "하이퍼바이저", "12#fb310dfa",
      "가상머신을 만들고 실행하는 소프트웨어. 게스트 OS에게 가상의 하드웨어를 보여 준다.",
      "The software that creates and runs virtual machines, showing each guest OS virtual hardware.",
      ("00",)),
    T("type 1: bare metal", "Bare-Metal형", "12#types-here",
      "타입 1 하이퍼바이저. 호스트OS 없이 하드웨어 위에서 바로 돈다(Xen, ESXi). KVM은 호스트 커널 자체를 하이퍼바이저로 만든다.",
      "Type 1: the hypervisor runs on the hardware itself, with no host OS below (Xen, ESXi); KVM "
      "turns the host kernel itself into one."),
    T("host OS", "호스트OS", "13#13-16",
      "하드웨어 위에서 직접 도는 운영체제. Host형 하이퍼바이저와 컨테이너가 이 위에서 돈다.",
      "The operating system that runs on the hardware itself; hosted hypervisors and containers run "
      "on it.", ("12",)),
    T("type 2: hosted", "Host형", "13#13-16",
      "타입 2 하이퍼바이저. 호스트OS 위에서 보통 응용프로그램처럼 돈다(QEMU, VirtualBox).",
      "Type 2: the hypervisor is an ordinary program on a host OS (QEMU, VirtualBox).", ("12",)),
    T("application program", "응용프로그램", "13#13-16",
      "운영체제 위에서 사용자를 위해 돌아가는 프로그램(웹 서버, 데이터베이스, QEMU 등).",
      "A program that runs on an operating system for its users (a web server, a database, QEMU)."),
    T("full virtualization", "전가상화", "12#fb310dfa",
      "게스트 OS를 고치지 않고 기계 전체를 흉내 내는 가상화. 바이너리 변환이나 CPU의 하드웨어 지원으로 한다.",
      "Virtualization that runs an unmodified guest OS by imitating the whole machine, by binary "
      "translation or with hardware assist.", ("00",)),
    T("paravirtualization", "반가상화", "12#b862e70e",
      "게스트 OS가 자신이 가상머신 안에 있음을 알고 하이퍼콜이나 virtio로 하이퍼바이저에 직접 요청하는 가상화. 게스트를 고쳐야 한다.",
      "Virtualization in which the guest knows it is virtual and asks the hypervisor directly "
      "(hypercalls, virtio); the guest must be modified.", ("00",)),
    T("low-level", "로우레벨", "12#f4a18e61",
      "하드웨어에 가까운 쪽. 로우레벨 드라이버는 장치의 레지스터를 직접 다룬다.",
      "Close to the hardware: a low-level driver programs a device's registers itself."),
    T("kernel driver", "커널드라이브", "12#b862e70e",
      "커널 안에서 장치를 다루는 코드, 곧 커널 드라이버. 노트의 '커널드라이브'는 이것을 가리킨다.",
      "Kernel code that drives a device - a kernel driver (the notes write 커널드라이브)."),
    T("hard to adopt", "도입이 어렵다", "12#3b595684",
      "새 기술을 실제로 쓰기 시작하기 어렵다는 뜻. 반가상화는 게스트 OS를 고쳐야 해서 그랬다.",
      "Hard to take into use: paravirtualization needed a modified guest OS."),
    # -- 컨테이너 가상화 ------------------------------------------------------------------------
    T("container virtualization", "컨테이너 가상화", "13#13-16",
      "호스트 커널 하나를 함께 쓰면서 논리적인 구역으로 애플리케이션을 나눠 실행하는 가상화.",
      "Running applications in separate logical areas of one shared host kernel.", ("10",)),
    T("logical area", "논리적인 구역", "10#71f7c55b",
      "한 커널 안에서 네임스페이스와 cgroup으로 나눈 영역. 컨테이너 하나가 구역 하나다.",
      "An area of one kernel fenced off by namespaces and cgroups; one container is one area."),
    # -- DOCKER ---------------------------------------------------------------------------------
    T("Docker", "도커", "A#e89f1d6d",
      "이미지를 만들고 컨테이너를 실행하는 오픈소스 플랫폼. 실제 커널 호출은 그 아래의 containerd와 runc가 한다.",
      "An open-source platform that builds images and runs containers; containerd and runc do the "
      "kernel work underneath.", ("01", "08")),
    T("automation", "자동화", "10#7348d4c0",
      "사람이 손으로 하던 일을 프로그램이 대신하는 것. 도커는 컨테이너를 만드는 수십 단계를 명령 하나로 해 준다.",
      "A program doing what people did by hand; Docker turns the dozens of steps that make a "
      "container into one command."),
    T("open-source software (OSSW)", "OSSW", "A#e1e0d370",
      "오픈소스 소프트웨어(Open Source SoftWare)의 줄임말.",
      "Short for open-source software.", ("A",)),
    T("open source", "오픈소스", "A#a-go-binary",
      "소스 코드가 공개되어 누구나 읽고 고치고 다시 배포할 수 있는 것. 도커, runc, 리눅스가 그렇다.",
      "Source code anyone may read, change and pass on; Docker, runc and Linux are open source."),
    T("virtualization platform", "가상화 플랫폼", "A#a0plan02",
      "가상화 기능을 쓰기 쉽게 묶어 놓은 도구 모음. 도커는 커널의 컨테이너 기능 위에 선 플랫폼이다.",
      "A set of tools that makes virtualization easy to use; Docker is one, built on the kernel's "
      "container features."),
    T("written in the Go language", "go언어로 개발됨", "A#a-go-binary",
      "구글이 만든 Go 언어로 작성되었다는 뜻. 도커와 runc가 그렇다.",
      "Written in Go, the language from Google; Docker and runc are."),
    T("Docker container", "도커컨테이너", "A#e89f1d6d",
      "도커 이미지로 만든 컨테이너. 실제로는 runc가 OCI 번들(rootfs와 config.json)을 읽어 만든다.",
      "A container made from a Docker image; runc actually makes it from an OCI bundle (rootfs and "
      "config.json)."),
    T("Docker image", "도커이미지", "09#5e578b9b",
      "컨테이너의 파일(레이어)과 실행 설정을 담은 꾸러미. 레이어마다 sha256 이름이 붙는다.",
      "A package of a container's files (its layers) and run-time configuration, each layer named by "
      "its sha256.", ("A",)),
    T("image", "이미지", "09#67fca18a",
      "읽기 전용 레이어를 쌓아 놓은 파일 묶음. 컨테이너의 루트는 이 위에 만들어진다.",
      "A stack of read-only layers that a container's root is made from."),
    T("configuration", "설정", "09#0ab4937f",
      "프로그램을 어떻게 실행할지 정하는 값: 명령, 환경 변수, 작업 디렉터리, 포트.",
      "The values that say how to run a program: command, environment, working directory, ports.",
      ("11",)),
    T("git", "깃", "09#86d421ce",
      "내용의 해시로 이름 붙인 커밋을 쌓아 가는 버전 관리 도구. 이미지 레이어도 같은 생각을 쓴다.",
      "The version-control tool that names commits by a hash of their content - the idea image "
      "layers share.", ("A",)),
    # -- Docker가 없던 시절 ----------------------------------------------------------------------
    T("framework", "프레임워크", "09#before-docker-run",
      "응용프로그램이 그 위에서 돌아가도록 미리 만들어 둔 코드와 규칙(웹 프레임워크, 자바 런타임 등).",
      "Ready-made code and rules an application is built on (a web framework, a Java runtime)."),
    T("plug-in", "플러그인", "09#before-docker-run",
      "다른 프로그램에 끼워 넣어 기능을 더하는 작은 프로그램.",
      "A small program that adds a feature to another one."),
    T("when it tangles, start over", "꼬이면 다시", "09#before-docker-run",
      "한 서버에 설치한 것들이 버전 충돌 등으로 엉키면 서버를 처음부터 다시 설치해야 했다는 뜻.",
      "Before containers, when programs installed on one server got tangled (clashing versions), the "
      "server was set up again from scratch."),
    T("physical hardware", "물리적인 하드웨어", "13#13-11",
      "손으로 만질 수 있는 실제 서버 기계: CPU, 메모리, 디스크.",
      "The real machine you can touch: its CPUs, memory and disks."),
    # -- THINK ----------------------------------------------------------------------------------
    T("environment", "환경", "09#de1c49ac",
      "프로그램이 돌아가는 조건 전체: 파일, 라이브러리, 환경 변수, 설정. 이미지 하나가 환경 하나를 만든다.",
      "Everything a program runs with - files, libraries, environment variables, settings; one image "
      "makes one environment.", ("11",)),
    T("combination", "조합", "11#e5473f36",
      "여러 이미지를 함께 묶어 하나의 서비스를 만드는 것. 이 실습에서는 compose 파일이 한다.",
      "Putting several images together into one service - a compose file does it here."),
    # -- 가상화기술과 컨테이너기술 차이점 ----------------------------------------------------------------
    T("virtual machine", "가상머신", "13#13-16",
      "하이퍼바이저가 만든 가상의 컴퓨터. 자기 커널(게스트OS)을 따로 부팅한다.",
      "A virtual computer made by a hypervisor; it boots a kernel of its own (the guest OS).",
      ("00", "08", "11")),
    T("guest OS", "게스트OS", "12#fb310dfa",
      "가상머신 안에서 부팅되는 운영체제.",
      "The operating system that boots inside a virtual machine.", ("00", "11", "13")),
    T("scale up", "스케일업", "13#13-13",
      "한 대를 더 크게 만드는 것: CPU와 메모리를 늘린다. 가상머신은 보통 다시 부팅해야 한다.",
      "Making one machine bigger - more CPUs and memory; a VM usually needs a reboot.", ("11",)),
    T("scale out", "스케일아웃", "11#2bf39af6",
      "같은 것을 여러 개 더 띄우는 것. 컨테이너는 하나 더 띄우는 데 1초 안팎이면 된다.",
      "Running more copies of the same thing; one more container takes about a second.",
      ("00", "13")),
    T("idle resources", "유휴자원", "11#30b6676c",
      "아무도 쓰지 않고 놀고 있는 CPU 시간과 메모리.",
      "CPU time and memory that nobody is using at the moment.", ("08", "13")),
    T("efficiency", "효율성", "11#30b6676c",
      "같은 자원으로 얼마나 많은 일을 하는가. 컨테이너는 남는 자원을 다른 컨테이너가 바로 가져다 써서 효율성이 높다.",
      "How much work the same resources do; containers are efficient because one at once takes up "
      "what another leaves idle."),
    T("lightweight", "경량화", "13#13-07",
      "가볍게 만드는 것. 컨테이너는 커널을 따로 부팅하지 않아서 메모리를 적게 쓰고 빨리 뜬다.",
      "Making something light: a container boots no kernel, so it needs little memory and starts "
      "fast."),
)

LAB_TERMS: tuple[Term, ...] = (
    # -- the root and the six namespaces --------------------------------------------------------
    T("chroot", "chroot (루트 바꾸기)", "01#18d79c90",
      "프로세스의 루트 디렉토리를 바꾸는 시스템 콜. 경로만 가둘 뿐이라 안에서 root면 빠져나갈 수 있다.",
      "The system call that changes a process's root directory; it confines paths only, and root "
      "inside can climb out."),
    T("pivot_root", "pivot_root (루트 갈아 끼우기)", "01#17c62cd9",
      "마운트 네임스페이스 전체의 루트를 새 디렉터리로 바꾸고 옛 루트를 떼어 내는 시스템 콜. chroot 탈출이 통하지 않는다.",
      "The system call that makes a new directory the root of a whole mount namespace and detaches "
      "the old one; the chroot escape no longer works."),
    T("mount namespace", "마운트 네임스페이스", "05#79f8366d",
      "프로세스마다 마운트 표를 따로 갖게 하는 네임스페이스(노트의 mnt).",
      "Gives processes a mount table of their own (the notes' mnt)."),
    T("PID namespace", "PID 네임스페이스", "04#04-07",
      "프로세스 번호를 1번부터 따로 매기는 네임스페이스. 안의 1번 프로세스가 init 노릇을 한다(노트의 pid).",
      "Numbers processes from 1 again; PID 1 inside takes on init's duties (the notes' pid)."),
    T("network namespace", "네트워크 네임스페이스", "06#06-29",
      "링크, 주소, 라우팅 표, 포트를 따로 갖게 하는 네임스페이스(노트의 net).",
      "Gives processes their own links, addresses, routes and ports (the notes' net)."),
    T("IPC namespace", "IPC 네임스페이스", "03#03-09",
      "System V IPC 객체와 POSIX 메시지 큐를 따로 갖게 하는 네임스페이스(노트의 ipc).",
      "Gives processes their own System V IPC objects and POSIX message queues (the notes' ipc)."),
    T("UTS namespace", "UTS 네임스페이스", "02#02-05",
      "호스트네임과 NIS 도메인 이름을 따로 갖게 하는 네임스페이스(노트의 uts).",
      "Gives processes their own hostname and NIS domain name (the notes' uts)."),
    T("user namespace", "사용자 네임스페이스", "07#32b46691",
      "uid와 gid를 다시 매기는 네임스페이스. 안에서는 root여도 바깥에서는 평범한 사용자다(노트의 user).",
      "Renumbers uids and gids: root inside, an ordinary user outside (the notes' user)."),
    T("uid map", "uid 매핑 (uid_map)", "07#affd7666",
      "사용자 네임스페이스 안의 uid가 바깥의 어느 uid인지 적은 표. 한 번만 쓸 수 있다.",
      "The table that says which outside uid each inside uid stands for; it can be written once."),
    T("mount propagation", "마운트 전파", "05#3bbb937e",
      "한 마운트 네임스페이스에서 일어난 마운트가 다른 네임스페이스로 건너가는지 정하는 성질(shared, slave, private).",
      "Whether a mount made in one mount namespace crosses to another: shared, slave or private."),
    T("bind mount", "바인드 마운트", "05#3ab10967",
      "이미 있는 디렉터리를 다른 경로에도 보이게 붙이는 마운트. 복사가 아니라 같은 파일이다(docker run -v).",
      "Makes an existing directory appear at a second path - the same files, not a copy "
      "(docker run -v)."),
    T("veth pair", "veth 쌍", "06#06-13",
      "양 끝이 연결된 가상 네트워크 링크 한 쌍. 한쪽에 보낸 프레임이 다른 쪽으로 나온다. 끝을 서로 다른 네임스페이스에 둔다.",
      "Two virtual links joined like a cable: what goes into one end comes out of the other; the ends "
      "sit in different namespaces."),
    T("bridge", "브리지", "06#06-17",
      "소프트웨어로 만든 스위치. 여러 veth의 바깥쪽 끝을 꽂아 네임스페이스들을 잇는다(도커의 docker0).",
      "A switch made of software; the outer ends of veths plug into it to join namespaces "
      "(Docker's docker0)."),
    T("port publishing", "포트 공개 (-p)", "06#06-37",
      "컨테이너 안의 포트를 호스트의 포트로 닿게 하는 것(docker run -p).",
      "Making a container's port answer on a port of the host (docker run -p)."),
    # -- PID 1 -----------------------------------------------------------------------------------
    T("orphan process", "고아 프로세스", "04#04-12",
      "부모가 먼저 끝나 버린 프로세스. 커널이 그 네임스페이스의 1번 프로세스에게 넘긴다.",
      "A process whose parent has ended; the kernel hands it to PID 1 of its namespace."),
    T("zombie process", "좀비 프로세스", "04#04-14",
      "끝났지만 부모가 wait()로 거두지 않아 PID와 종료 상태만 남은 프로세스(ps의 Z, <defunct>).",
      "A process that has ended but whose parent never collected it with wait(); only its PID and "
      "exit status remain (Z in ps)."),
    T("PID 1 (init)", "1번 프로세스 (init)", "04#04-16",
      "PID 네임스페이스의 첫 프로세스. 고아를 거두고, 핸들러가 없는 시그널은 받지 않는다(바깥 네임스페이스에서 보낸 SIGKILL만은 예외).",
      "The first process of a PID namespace: it reaps orphans and does not receive signals it has no "
      "handler for (only SIGKILL from an outer namespace gets through)."),
    # -- the five cgroup resources and more ------------------------------------------------------
    T("memory limit", "메모리 제한", "08#e2c6cd12",
      "그룹이 쓸 수 있는 메모리의 상한. 넘으면 먼저 회수를 시도하고, 안 되면 OOM 킬러가 프로세스를 끝낸다.",
      "The most memory a group may hold; past it the kernel reclaims, then the OOM killer ends a "
      "process."),
    T("OOM killer", "OOM 킬러", "08#e2c6cd12",
      "메모리가 모자랄 때(Out Of Memory) 커널이 프로세스 하나를 골라 끝내는 기능.",
      "What the kernel uses when memory runs out: it picks a process and kills it."),
    T("CPU weight", "CPU 가중치 (shares / weight)", "08#b30ad8ce",
      "바쁜 코어를 그룹끼리 어떤 비율로 나눌지 정하는 값. 상한이 아니어서 혼자면 코어 전체를 쓴다.",
      "How a busy core is split between groups; not a cap - a group alone gets the whole core."),
    T("CPU quota", "CPU 할당량 (quota)", "08#f9383a0a",
      "주기마다 쓸 수 있는 CPU 시간의 상한. 코어가 놀고 있어도 그 이상은 못 쓴다.",
      "The most CPU time a group may use per period - a cap even on an idle machine."),
    T("I/O throttle", "I/O 제한", "08#2b321a96",
      "그룹이 장치에서 초당 읽고 쓸 수 있는 바이트 수의 상한.",
      "The most bytes per second a group may read from or write to a device."),
    T("network shaping", "네트워크 대역폭 조절 (tc)", "08#2bb1e689",
      "cgroup이 아니라 링크에 걸린 큐잉 규칙(tc의 tbf 등)으로 보내는 속도를 제한하는 것.",
      "Limiting the sending rate with a queueing discipline on the link (tc's tbf) - not a cgroup."),
    T("device node", "장치 노드 (Device node)", "08#a40ee5d4",
      "/dev 아래의 장치 파일. 커널은 경로가 아니라 (종류, major, minor) 번호로 접근을 허용하거나 막는다.",
      "A device file under /dev; the kernel allows or denies it by its numbers (type, major, minor), "
      "not by its path."),
    T("pids limit", "프로세스 수 제한 (pids)", "08#c34b5fa7",
      "그룹 안에 동시에 있을 수 있는 프로세스 수의 상한. 넘으면 fork()가 EAGAIN으로 실패한다.",
      "The most processes a group may hold at once; past it fork() fails with EAGAIN."),
    T("eBPF", "eBPF", "08#a784fcad",
      "커널이 먼저 안전한지 검사한 뒤 커널 안에서 실행하는 작은 프로그램. cgroup v2는 장치 규칙을 이것으로 건다.",
      "A small program the kernel verifies and then runs inside itself; cgroup v2 enforces device "
      "rules with one."),
    # -- images ----------------------------------------------------------------------------------
    T("overlayfs", "오버레이 파일시스템", "09#67fca18a",
      "읽기 전용 레이어 여러 개 위에 쓰기 가능한 층 하나를 겹쳐 한 디렉터리로 보여 주는 파일시스템.",
      "A filesystem that shows several read-only layers with one writable layer on top as one "
      "directory."),
    T("layer", "레이어", "09#db66cf50",
      "이미지를 이루는 변경분 하나(tar). sha256으로 이름이 붙고, 같은 레이어는 한 번만 저장된다.",
      "One change set of an image (a tar), named by its sha256; the same layer is stored once."),
    T("copy-up", "카피업 (copy-up)", "09#e3d0be6b",
      "아래 레이어의 파일을 고치려 할 때 overlayfs가 먼저 그 파일을 위층으로 복사하는 것.",
      "overlayfs copying a lower file into the upper layer before it is changed."),
    T("whiteout", "화이트아웃", "09#e3d0be6b",
      "아래 레이어의 파일을 지웠다는 표시. 위층에 0/0 번 문자 장치로 남는다.",
      "The mark that a lower file was deleted: a character device 0/0 in the upper layer."),
    # -- the full container ----------------------------------------------------------------------
    T("capability", "케이퍼빌리티 (capability)", "07#28a3a8dd",
      "root의 권한을 40여 개로 쪼갠 조각 하나(CAP_SYS_ADMIN 등). 컨테이너는 대부분을 버린다.",
      "One of the forty-odd pieces root's power is split into (CAP_SYS_ADMIN ...); a container drops "
      "most of them."),
    T("no_new_privs", "no_new_privs", "10#02549b0c",
      "한 번 켜면 exec로도 권한을 더 얻지 못하게 하는 프로세스 플래그(setuid 무력화).",
      "A process flag that, once set, lets no exec gain privileges (setuid stops working)."),
    T("seccomp", "seccomp (시스템 콜 필터)", "10#seccomp-show",
      "프로세스가 부를 수 있는 시스템 콜을 BPF 필터로 거르는 커널 기능.",
      "The kernel feature that filters which system calls a process may make, with a BPF program."),
    T("OCI bundle", "OCI 번들", "A#e1e0d370",
      "런타임에게 넘기는 디렉터리: rootfs와 config.json.",
      "The directory handed to a runtime: a rootfs and a config.json."),
    T("runc", "runc", "A#e89f1d6d",
      "도커와 containerd 아래에서 실제로 커널을 호출해 컨테이너를 만드는 저수준 런타임.",
      "The low-level runtime under Docker and containerd that makes the kernel calls."),
    T("compose", "compose (여러 컨테이너 묶기)", "11#e5473f36",
      "여러 이미지로 된 서비스를 파일 하나에 적고 한 번에 올리고 내리는 도구.",
      "A tool that describes a service of several images in one file and brings it up and down at once."),
    T("replica", "레플리카 (복제본)", "11#2bf39af6",
      "같은 이미지로 띄운 똑같은 컨테이너 하나. 스케일아웃은 레플리카를 늘리는 것이다.",
      "One identical copy of a container; scaling out adds replicas."),
    # -- virtual machines ------------------------------------------------------------------------
    T("type 1 hypervisor", "타입 1 하이퍼바이저", "12#types-here",
      "호스트OS 없이 하드웨어 위에서 바로 도는 하이퍼바이저(노트의 Bare-Metal형).",
      "A hypervisor that runs on the hardware itself (the notes' Bare-Metal형)."),
    T("type 2 hypervisor", "타입 2 하이퍼바이저", "13#13-16",
      "호스트OS 위의 프로그램으로 도는 하이퍼바이저(노트의 Host형). 이 실습의 QEMU.",
      "A hypervisor that runs as a program on a host OS (the notes' Host형); QEMU here."),
    T("binary translation", "바이너리 변환", "12#fb310dfa",
      "게스트의 기계어를 실행 전에 호스트에서 안전하게 돌 코드로 바꿔 쓰는 전가상화 방식(VMware, QEMU TCG).",
      "Full virtualization that rewrites guest machine code into safe host code before running it "
      "(VMware, QEMU's TCG)."),
    T("TCG", "TCG (QEMU의 변환기)", "12#fb310dfa",
      "QEMU의 Tiny Code Generator. 하드웨어 지원 없이 게스트 명령을 호스트 코드로 바꿔 실행한다.",
      "QEMU's Tiny Code Generator: it translates guest instructions into host code, with no hardware "
      "help."),
    T("hardware-assisted virtualization", "하드웨어 지원 가상화", "12#3b595684",
      "CPU가 VT-x나 AMD-V로 게스트 명령을 직접 실행하고, 민감한 명령에서만 하이퍼바이저로 넘어오는 방식(KVM).",
      "The CPU (VT-x, AMD-V) runs guest instructions itself and exits to the hypervisor only on "
      "sensitive ones (KVM)."),
    T("KVM", "KVM", "12#3b595684",
      "리눅스 커널을 하이퍼바이저로 만드는 커널 모듈. /dev/kvm으로 쓴다.",
      "The kernel module that turns Linux into a hypervisor, used through /dev/kvm."),
    T("trap-and-emulate", "트랩 앤 에뮬레이트", "12#b862e70e",
      "게스트가 특권 명령이나 가짜 장치 레지스터를 건드리면 하이퍼바이저로 넘어와(트랩) 대신 흉내 내는 방식.",
      "When the guest touches a privileged instruction or a device register, control traps to the "
      "hypervisor, which emulates it."),
    T("virtio", "virtio", "12#b862e70e",
      "가상머신용으로 만든 반가상화 장치 규격. 요청을 공유 메모리 링에 모아 한 번에 넘긴다.",
      "The paravirtual device standard made for VMs: requests are batched on a ring in shared memory."),
    T("microVM", "마이크로VM", "12#cf224aee",
      "PCI 버스나 옛 장치 없이 virtio 장치만 가진 아주 작은 가상머신(QEMU microvm, Firecracker).",
      "A minimal VM with no PCI bus or legacy devices, only virtio (QEMU's microvm, Firecracker)."),
    T("PSS", "PSS (비례 메모리)", "13#13-07",
      "여러 프로세스가 함께 쓰는 페이지를 그 프로세스 수만큼 나눠 셈한 메모리 양. 모두 더하면 실제 사용량과 맞는다.",
      "Memory with each shared page split among the processes that map it, so the sums add up."),
)

ALL_TERMS: tuple[Term, ...] = TERMS + LAB_TERMS


def notebook_file(notebook: str):
    """The notebook file for an id such as "05" or "A", or None while it is not written."""
    return cells.notebook_file(notebook)


def seed_text() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in seedmap.seed_files())


def _where(term: Term) -> str:
    """The demonstrating cell as a reader finds it: the notebook, the section above it, the cell id."""
    path = cells.notebook_file(cells.CellRef.parse(term.shown).notebook)
    name = path.stem if path else f"{term.shown.split('#')[0]} (being written)"
    return f"{name} · {cells.heading_above(term.shown) or ''} ({term.shown})"


def _caption(terms: tuple[Term, ...]) -> str:
    if terms is TERMS:
        return f"노트의 용어 (the notes' terms): {len(terms)}"
    if terms is LAB_TERMS:
        return f"실습의 용어 (the lab's terms): {len(terms)}"
    return f"찾은 용어 (terms found): {len(terms)}"


def table(terms: tuple[Term, ...] = TERMS) -> Table:
    """The glossary as a table: term, Korean word, both definitions, and where it is shown running."""
    rows = [(t.english, t.korean, t.ko, t.en, _where(t)) for t in terms]
    return Table(["term", "한국어 (as in the notes)", "정의", "definition", "shown in"], rows, _caption(terms))


def linked(terms: tuple[Term, ...] = TERMS) -> cells.LinkedTable:
    """The terms with a clickable link to each one's cell, for notebook G."""
    rows = [(t.korean, t.english, f"{t.ko}\n{t.en}", cells.CellRef.parse(t.shown)) for t in terms]
    return cells.LinkedTable(("한국어", "term", "정의 · definition", "보기 · shown in"), rows, table(terms))


def search(word: str) -> Table:
    """Every term whose Korean or English side mentions a word."""
    found = tuple(t for t in ALL_TERMS if word.lower() in (t.korean + t.english + t.ko + t.en).lower())
    return table(found)


def _has_hangul(text: str) -> bool:
    return any("\uac00" <= ch <= "\ud7a3" for ch in text)


def problems(terms: tuple[Term, ...] = ALL_TERMS) -> list[str]:
    """Plain sentences for every term that lacks a definition or whose cell cannot show it."""
    found = []
    for t in terms:
        if not (t.ko.strip() and _has_hangul(t.ko)) or "\n" in t.ko:
            found.append(f"{t.english}: no one-line Korean definition")
        if len(t.en.split()) < 4 or "\n" in t.en:
            found.append(f"{t.english}: no one-line English definition")
        cell = cells.find(t.shown)
        if cell is None:
            found.append(f"{t.english}: its cell {t.shown} does not exist")
        elif cell["cell_type"] != "code":
            found.append(f"{t.english}: its cell {t.shown} is {cell['cell_type']}, which runs nothing")
    return found
