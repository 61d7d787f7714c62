"""A small container runtime built from the lab's pieces: the notebooks' steps, together.

    cid = container.run("busybox", ["httpd", "-f", "-p", "80"], name="web",
                        publish=["127.0.0.1:8080:80"], memory="64M")
    container.exec_in("web", ["ps"]); container.logs("web")
    container.stop("web"); container.remove("web")

State lives in /run/labsupport/containers/<id>/ (state.json, config.json,
container.log), so the CLI (``python -m labsupport ps``) sees what a notebook
started. ``run_bundle(DIR)`` runs an OCI bundle, the one ``runc spec`` writes.
"""
from labsupport.container.observe import observe
from labsupport.container.runtime import (
    bundle_plan,
    create,
    create_bundle,
    exec_in,
    inspect,
    kill,
    logs,
    plan_of,
    ps_table,
    remove,
    run,
    run_bundle,
    start,
    start_phases,
    stop,
    try_escape,
    wait,
)
from labsupport.container.spec import load as load_spec
from labsupport.container.spec import parse as parse_spec
from labsupport.container.store import list_containers, state

__all__ = ["bundle_plan", "create", "create_bundle", "exec_in", "inspect", "kill", "list_containers", "load_spec",
           "logs", "observe", "parse_spec", "plan_of", "ps_table", "remove", "run", "run_bundle", "start", "start_phases", "state", "stop",
           "try_escape", "wait"]
