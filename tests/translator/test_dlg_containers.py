"""EAGLE Docker and Mpi components translate to dropflow's docker and mpi kinds."""

from __future__ import annotations

import pytest

from dropflow.translator.dlgclasses import map_app


def test_docker_component_maps_to_the_docker_kind():
    mapped = map_app(
        "Docker",
        "dlg.apps.dockerapp.DockerApp",
        {"image": "busybox:latest", "command": "cp %i[in] %o[out]"},
        [],
        ["out"],
        "node 7 (Docker)",
    )
    assert mapped.kind == "docker"
    assert mapped.fields == {"image": "busybox:latest", "command": "cp {in} {out}"}


def test_mpi_component_maps_to_the_mpi_kind():
    mapped = map_app(
        "Mpi",
        "dlg.apps.mpi.MPIApp",
        {"command": "./solver", "args": "-n 3", "num_of_procs": "4"},
        [],
        [],
        "node 8 (Mpi)",
    )
    assert mapped.kind == "mpi" and mapped.fields == {"command": "./solver -n 3", "ranks": 4}


@pytest.mark.parametrize(
    "category,values,field,message",
    [
        ("Docker", {"command": "true"}, "image", "names no image"),
        ("Docker", {"image": "busybox"}, "command", "has no command"),
        ("Mpi", {"command": "x", "num_of_procs": "many"}, "num_of_procs", "is not a number"),
        ("Mpi", {"command": "x", "num_of_procs": 0}, "num_of_procs", "at least one rank"),
    ],
)
def test_incomplete_components_translate_as_foreign_naming_the_field(category, values, field, message):
    """Incomplete components keep their place in the graph; the reason waits for deploy."""
    mapped = map_app(category, "", values, [], [], f"node 9 ({category})")
    assert mapped.kind == "foreign_app"
    assert mapped.fields["origin"] == f"node 9 ({category})" and mapped.fields["field"] == field
    assert message in mapped.fields["reason"] and mapped.fields["category"] == category
