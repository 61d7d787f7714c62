"""Images: layers in a content-addressed store, stacked by overlayfs, shared between images."""
from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from labsupport import cli, images, ownership, process
from labsupport.images import layers, overlay, store
from labsupport.kernel.errors import LabError


@pytest.fixture()
def box():
    path = ownership.temp_dir("image-test")
    yield path
    images.release_rootfs(path)
    import shutil
    shutil.rmtree(path)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_busybox_base_is_built_once() -> None:
    first = images.build_busybox_base()
    again = images.build_busybox_base()
    assert again.id == first.id and len(first.layers) == 1
    assert (first.layers[0] / "bin/busybox").is_file()
    assert first.config.cmd == ["/bin/sh"]
    assert images.get("busybox:latest").id == images.get(first.id[:12]).id == first.id


def test_an_unknown_image_is_named_with_the_way_out() -> None:
    with pytest.raises(LabError, match=r"^No image named nosuch: `python -m labsupport image ls` lists them\.$"):
        images.get("nosuch")


def test_layers_stack_base_runtime_app_and_the_base_is_shared(name: str) -> None:
    base = images.build_busybox_base()
    app = images.build_image(f"{name}-app", [images.add_programs(["jq"]),
                                             images.add_files({"/app/data.json": '{"n": 41}'})],
                             cmd=["/usr/bin/jq", ".n + 1", "/app/data.json"], exposed_ports=[8080])
    other = images.build_image(f"{name}-web", [images.add_files({"/www/index.html": "hi"})])
    assert app.layers[0] == other.layers[0] == base.layers[0]
    assert len(app.layers) == 3 and app.history[1] == "lab: programs jq"
    assert (app.layers[1] / "usr/bin/jq").is_file() and not (app.layers[2] / "usr/bin/jq").exists()
    assert images.get(f"{name}-app").config.exposed_ports == [8080]
    assert {i.ref for i in images.list_images()} >= {f"{name}-app:latest", f"{name}-web:latest"}


def test_a_mounted_image_runs_its_program_and_the_host_sees_the_overlay(name: str, box: Path) -> None:
    images.build_busybox_base()
    app = images.build_image(name, [images.add_programs(["jq"]), images.add_files({"/app/data.json": '{"n": 41}'})])
    merged = images.prepare_rootfs(name, box)
    inside = process.run_command(["/usr/bin/jq", ".n + 1", "/app/data.json"], root=merged)
    assert inside.stdout.strip() == "42", inside
    line = overlay.mountinfo_line(merged)
    lower = line.split("lowerdir=")[1].split(",")[0].split(":")
    assert lower == [str(p) for p in reversed(app.layers)]  # topmost first
    images.release_rootfs(box)
    assert overlay.mount_at(merged) is None


def test_copy_up_and_whiteouts_land_in_upper_and_never_in_a_layer(box: Path) -> None:
    base = images.build_busybox_base()
    layer = base.layers[0]
    before = _sha(layer / "etc/hostname")
    merged = images.prepare_rootfs("busybox", box)
    (merged / "etc/hostname").write_text("changed\n")
    (merged / "etc/hosts").unlink()
    listing = process.run_command(["/bin/ls", "/etc"], root=merged).stdout.split()
    assert "hosts" not in listing and "hostname" in listing
    assert (box / "upper/etc/hostname").read_text() == "changed\n"
    hidden = os.lstat(box / "upper/etc/hosts")
    assert stat.S_ISCHR(hidden.st_mode) and hidden.st_rdev == 0
    assert _sha(layer / "etc/hostname") == before and (layer / "etc/hosts").is_file()
    assert layers.whiteouts(box / "upper") == ["etc/hosts"]


def test_a_removing_layer_is_a_whiteout_the_merged_root_hides(name: str, box: Path) -> None:
    images.build_busybox_base()
    image = images.build_image(name, [images.remove_files(["/etc/os-release"])])
    assert layers.whiteouts(image.layers[-1]) == ["etc/os-release"]
    merged = images.prepare_rootfs(name, box)
    assert not (merged / "etc/os-release").exists()
    assert (image.layers[0] / "etc/os-release").is_file()


def test_an_image_in_use_is_kept_then_removed_with_only_its_own_layers(name: str, box: Path) -> None:
    base = images.build_busybox_base()
    image = images.build_image(name, [images.add_files({"/only-here": "x"})])
    images.prepare_rootfs(name, box)
    with pytest.raises(LabError, match="used by a mounted container root"):
        images.remove(name)
    images.release_rootfs(box)
    assert images.remove(name) == [f"{name}:latest"]
    assert not image.layers[-1].exists() and not (store.blobs_dir() / image.id).exists()
    assert base.layers[0].is_dir()
    with pytest.raises(LabError, match="No image named"):
        images.get(name)


def test_a_package_layer_holds_the_files_dpkg_lists(name: str) -> None:
    images.build_busybox_base()
    image = images.build_image(name, [images.add_packages(["jq"])])
    assert (image.layers[-1] / "usr/bin/jq").is_file()
    assert not (image.layers[-1] / "usr/share/doc").exists()
    with pytest.raises(LabError, match="not installed"):
        images.build_image(name, [images.add_packages(["labno-such-package"])])


def test_the_cli_lists_exports_imports_and_removes(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    images.build_busybox_base()
    images.build_image(name, [images.add_files({"/hello": "hi"})])
    scratch = ownership.temp_dir("image-cli")
    try:
        assert cli.main(["image", "ls"]) == 0
        assert f"{name}:latest" in capsys.readouterr().out
        assert cli.main(["image", "export", name, str(scratch / "a.tar")]) == 0
        assert cli.main(["image", "import", str(scratch / "a.tar"), "--name", f"{name}-copy:2"]) == 0
        assert images.get(f"{name}-copy:2").id == images.get(name).id
        assert cli.main(["image", "rm", f"{name}-copy:2"]) == 0
        assert cli.main(["image", "rm", f"{name}-copy:2"]) == 2
        assert "No image named" in capsys.readouterr().err
    finally:
        import shutil
        shutil.rmtree(scratch)


def test_the_exercises_hint_first_and_pass_once_done(box: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from labsupport.course import predict
    from labsupport.course.exercises import check, nb09_images, workdir

    monkeypatch.setattr(workdir, "EXERCISES_DIR", box / "exercises")
    images.build_busybox_base()
    copybox = workdir.exercise_dir("09") / nb09_images.COPY_BOX
    try:
        assert [check("09", k).passed for k in (1, 2, 3)] == [False, False, False]
        # 1: one chmod copies the whole file up.
        predict("09", 1, "a few bytes")
        assert "Nothing is mounted" in check("09", 1).message
        merged = images.prepare_rootfs("busybox", copybox)
        assert "holds no /bin/busybox yet" in check("09", 1).message
        target = merged / nb09_images.TARGET.lstrip("/")
        os.chmod(target, os.stat(target).st_mode)  # the same mode: copied up, nothing changed
        assert "same permission bits" in check("09", 1).message
        os.chmod(target, 0o700)
        verdict = check("09", 1)
        assert verdict.passed, verdict
        size = os.stat(copybox / "upper" / nb09_images.TARGET.lstrip("/")).st_size
        assert size == os.stat(images.get("busybox").layers[0] / "bin/busybox").st_size > 100_000
        # 3: one library path, two versions.
        def app(version: str) -> list[images.Step]:
            return [images.add_files({nb09_images.LIBRARY: f"libdemo {version}\n",
                                      "/app/run.sh": f"cat {nb09_images.LIBRARY}\n"})]
        images.build_image("ex09-a", app("1.0"), cmd=["/bin/sh", "/app/run.sh"])
        images.build_image("ex09-b", app("1.0"), cmd=["/bin/sh", "/app/run.sh"])
        assert "the same" in check("09", 3).message
        images.build_image("ex09-b", app("2.0"), cmd=["/bin/echo", "hello"])
        assert "not its own library" in check("09", 3).message
        images.build_image("ex09-b", app("2.0"), cmd=["/bin/sh", "/app/run.sh"])
        verdict = check("09", 3)
        assert verdict.passed and "libdemo 1.0" in verdict.message and "libdemo 2.0" in verdict.message
        # 2: the whiteout.
        container = workdir.exercise_dir("09") / "box"
        merged = images.prepare_rootfs("busybox", container)
        (merged / "etc/os-release").unlink()
        answer = workdir.exercise_dir("09") / "whiteout.txt"
        answer.write_text(str(merged / "etc/os-release"))
        assert "not a whiteout" in check("09", 2).message or "does not exist" in check("09", 2).message
        answer.write_text(str(container / "upper/etc/os-release"))
        assert check("09", 2).passed, check("09", 2)
        images.release_rootfs(container)
    finally:
        images.release_rootfs(copybox)
        for ref in ("ex09-a", "ex09-b"):
            if ref + ":latest" in store.refs():
                images.remove(ref)


def test_commit_turns_a_containers_changes_into_one_more_layer(name: str, box: Path) -> None:
    base = images.build_busybox_base()
    first, second = box / "first", box / "second"
    merged = images.prepare_rootfs("busybox", first)
    (merged / "etc/hostname").write_text("committed\n")
    (merged / "etc/hosts").unlink()
    changed = images.commit(first, name)
    images.release_rootfs(first)
    assert changed.diff_ids[:-1] == base.diff_ids and len(changed.diff_ids) == 2
    top = changed.layers[-1]
    assert layers.whiteouts(top) == ["etc/hosts"] and (top / "etc/hostname").read_text() == "committed\n"
    import tarfile
    with tarfile.open(store.blob_path(changed.diff_ids[-1])) as tar:
        assert "etc/.wh.hosts" in tar.getnames()  # the whiteout, as it travels in a tar
    again = images.prepare_rootfs(name, second)  # a fresh container: an empty upper
    try:
        assert os.listdir(second / "upper") == []
        assert process.run_command(["/bin/cat", "/etc/hostname"], root=again).stdout == "committed\n"
        assert not (again / "etc/hosts").exists()
    finally:
        images.release_rootfs(second)
