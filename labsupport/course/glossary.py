"""Every term of the seed notes, with its Korean word as the notes write it, and where it is shown.

The notes' author reads Korean; the notebooks carry each term's Korean word
in parentheses at first use. This is the single list behind Appendix G, so a
test can hold it to the seed (every Korean word really occurs there) and to
the notebooks (every notebook named exists and shows the word).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from labsupport.kernel.tables import Table

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
SEED_NOTES = Path("/work/shared/seed")


@dataclass(frozen=True)
class Term:
    english: str
    korean: str          # exactly as the seed writes it
    notebooks: tuple[str, ...]  # "00".."13", "A", "G": where the term is shown running


TERMS: tuple[Term, ...] = (
    Term("container", "컨테이너", ("00", "01", "04")),
    Term("same interface", "동일한 인터페이스", ("00",)),
    Term("deployment", "배포", ("00",)),
    Term("message-queue server", "메시지 큐서버", ("00", "11")),
    Term("WAS (web application server)", "WAS서버", ("11",)),
    Term("DB server", "DB서버", ("11",)),
    Term("virtualization technology", "가상화 기술", ("A",)),
    Term("Linux container (LXC)", "리눅스 컨테이너", ("00", "A")),
    Term("namespace: control over isolated spaces", "독립된 공간에 대한 제어", ("00",)),
    Term("filesystem mount", "파일시스템 마운트", ("05",)),
    Term("mount", "마운트", ("05", "01")),
    Term("process", "프로세스", ("02", "04", "05")),
    Term("process space", "프로세스 공간", ("00",)),
    Term("duplicate port binding", "중복 포트바인딩", ("06",)),
    Term("communication channel", "통신통로", ("03",)),
    Term("hostname", "호스트네임", ("02", "00")),
    Term("user", "사용자", ("07", "01")),
    Term("cgroups: control over separate resources", "독립된 자원에 대한 제어", ("08", "00")),
    Term("resource", "리소스", ("08",)),
    Term("virtualization layer", "가상화 계층", ("00",)),
    Term("container runtime", "컨테이너 런타임", ("02", "03", "A")),
    Term("root directory", "루트 디렉토리", ("01", "04")),
    Term("library", "라이브러리", ("01",)),
    Term("system and related libraries", "시스템 라이브러리와 관련 라이브러리", ("01",)),
    Term("hypervisor", "하이퍼바이저", ("00", "12")),
    Term("type 1: bare metal", "Bare-Metal형", ("12",)),
    Term("type 2: hosted", "Host형", ("12",)),
    Term("full virtualization", "전가상화", ("00", "12")),
    Term("paravirtualization", "반가상화", ("00", "12")),
    Term("container virtualization", "컨테이너 가상화", ("13",)),
    Term("Docker", "도커", ("A", "01", "08")),
    Term("virtualization platform", "가상화 플랫폼", ("A",)),
    Term("written in the Go language", "go언어로 개발됨", ("A",)),
    Term("Docker container", "도커컨테이너", ("A",)),
    Term("Docker image", "도커이미지", ("09", "A")),
    Term("image", "이미지", ("09",)),
    Term("configuration", "설정", ("09", "11")),
    Term("environment", "환경", ("09", "11")),
    Term("git", "깃", ("09", "A")),
    Term("virtual machine", "가상머신", ("00", "08", "11", "13")),
    Term("guest OS", "게스트OS", ("00", "11", "13")),
    Term("scale up", "스케일업", ("13", "11")),
    Term("scale out", "스케일아웃", ("00", "11", "13")),
    Term("idle resources", "유휴자원", ("08", "11", "13")),
    Term("lightweight", "경량화", ("13",)),
)


def notebook_file(notebook: str) -> Path | None:
    """The notebook file for an id such as "05" or "A", or None while it is not written."""
    found = sorted(NOTEBOOKS.glob(f"{notebook}_*.ipynb"))
    return found[0] if found else None


def seed_text() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted(SEED_NOTES.glob("*.txt")))


def table() -> Table:
    """Appendix G's table: term, Korean word, and the notebooks that show it (names, not ids)."""
    def names(ids: tuple[str, ...]) -> str:
        files = [notebook_file(i) for i in ids]
        return ", ".join(f.stem if f else f"{i} (being written)" for i, f in zip(ids, files))

    rows = [(t.english, t.korean, names(t.notebooks)) for t in sorted(TERMS, key=lambda t: t.english.lower())]
    return Table(["term", "한국어 (as in the notes)", "shown in"], rows, f"Glossary: {len(rows)} terms")
