"""A small builder of EAGLE ``.graph`` documents, for graphs the public corpus lacks.

The documents carry what both DALiuGE 6.6 and dropflow read: ``nodeDataArray`` with categories, fields and
port fields (``usage`` InputPort / OutputPort), ``parentId`` for construct membership, and links between
port field ids. Ids are readable (``"sink"``, ``"sink.in"``) so that failures name nodes plainly.
"""

from __future__ import annotations

import json
from typing import Any

_TYPES = {
    "Memory": ("Data", "dlg.data.drops.memory.InMemoryDROP"),
    "File": ("Data", "dlg.data.drops.file.FileDROP"),
    "PyFuncApp": ("Application", "dlg.apps.pyfunc.PyFuncApp"),
    "BashShellApp": ("Application", "dlg.apps.bash_shell_app.BashShellApp"),
    "PythonApp": ("Application", "dlg.apps.simple.SleepApp"),
    "DALiuGEApp": ("Application", "dlg.apps.simple.SleepApp"),
    "Scatter": ("Construct", None),
    "Gather": ("Construct", None),
    "Loop": ("Construct", None),
    "GroupBy": ("Construct", None),
    "MKN": ("Construct", None),
    "ParameterSet": ("Data", "dlg.data.drops.parset_drop.ParameterSetDROP"),
}


def field(
    name: str, value: Any, fid: str | None = None, usage: str = "NoPort", kind: str = ""
) -> dict[str, Any]:
    return {
        "id": fid or name,
        "name": name,
        "value": value,
        "defaultValue": "",
        "type": "Object" if usage != "NoPort" else "String",
        "parameterType": kind or ("ApplicationArgument" if usage != "NoPort" else "ComponentParameter"),
        "usage": usage,
        "positional": False,
        "encoding": "pickle",
    }


class Graph:
    def __init__(self, name: str) -> None:
        self.name = name
        self.nodes: list[dict[str, Any]] = []
        self.links: list[dict[str, Any]] = []

    def node(
        self,
        nid: str,
        category: str,
        parent: str | None = None,
        inputs: tuple[str, ...] = (),
        outputs: tuple[str, ...] = (),
        dropclass: str | None = None,
        args: dict[str, Any] | None = None,
        **params: Any,
    ) -> Graph:
        """A component; its ports get field ids ``<nid>.<port>``; ``params`` become component parameters and
        ``args`` application arguments."""
        category_type, default_class = _TYPES.get(category, ("Application", None))
        fields = [field(k, v) for k, v in params.items()]
        fields += [field(k, v, kind="ApplicationArgument") for k, v in (args or {}).items()]
        if dropclass or default_class:
            fields.append(field("dropclass", dropclass or default_class))
        fields += [field(p, "", f"{nid}.{p}", "InputPort") for p in inputs]
        fields += [field(p, "", f"{nid}.{p}", "OutputPort") for p in outputs]
        n: dict[str, Any] = {
            "id": nid,
            "name": nid,
            "category": category,
            "categoryType": category_type,
            "isGroup": category_type == "Construct",
            "fields": fields,
            "inputApplicationType": "None",
            "outputApplicationType": "None",
            "inputAppFields": [],
            "outputAppFields": [],
        }
        if parent:
            n["parentId"] = parent
        self.nodes.append(n)
        return self

    def data(
        self,
        nid: str,
        parent: str | None = None,
        category: str = "Memory",
        args: dict[str, Any] | None = None,
        **params: Any,
    ) -> Graph:
        # Data ports: DALiuGE reads links by port ids; a data node has one in and one out port.
        return self.node(nid, category, parent, ("in",), ("out",), args=args, **params)

    def link(self, src: str, sport: str, dst: str, dport: str, loop_aware: bool = False) -> Graph:
        self.links.append(
            {
                "from": src,
                "fromPort": f"{src}.{sport}",
                "to": dst,
                "toPort": f"{dst}.{dport}",
                "loop_aware": "1" if loop_aware else "0",
                "closesLoop": False,
            }
        )
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            "modelData": {"schemaVersion": "OJS", "filePath": f"{self.name}.graph", "fileType": "Graph"},
            "nodeDataArray": self.nodes,
            "linkDataArray": self.links,
        }

    def dumps(self) -> str:
        return json.dumps(self.to_dict(), indent=1)
