"""The harness's apps for DALiuGE 6.6, written the way its users write apps: BarrierAppDROPs.

``PyTask`` is a task of the ``py`` workloads: it calls the :mod:`tasks` function in its ``run`` -- ``inc`` of
its one input's value (of 0 for a first task, ``first=1``), the sum of several inputs' values -- and writes
the result, pickled, to its output ``InMemoryDROP``; a sink also writes it to ``result_path``, which the
harness reads back. (DALiuGE's ``PyFuncApp`` does the same through its argument-mapping layer, which costs
more per call: this app favours DALiuGE.)

``Producer`` makes the array (:func:`payload.make_array`) and writes its bytes into its output drop;
``Consumer`` reads its input drop's whole contents (``droputils.allDropContents``) and writes their CRC-32 to
``result_path``, which the harness compares with the expected checksum. (DALiuGE's own SharedMemoryDROP loses
its data in 6.6, so the pipeline goes through an InMemoryDROP.) Imported by the node manager, which finds this
module on its PYTHONPATH; runs only inside DALiuGE's virtualenv.
"""

from __future__ import annotations

import pickle

from dlg import droputils
from dlg.apps.app_base import BarrierAppDROP
from dlg.meta import dlg_int_param, dlg_string_param
from payload import checksum, make_array
from tasks import inc, total


class PyTask(BarrierAppDROP):
    first = dlg_int_param("first", 0)
    result_path = dlg_string_param("result_path", "")

    def run(self) -> None:
        if int(self.first):
            value = inc(0)
        else:
            values = [pickle.loads(droputils.allDropContents(d)) for d in self.inputs]
            value = inc(values[0]) if len(values) == 1 else total(values)
        data = pickle.dumps(value)
        for out in self.outputs:
            out.write(data)
        if self.result_path:
            with open(self.result_path, "w") as f:
                f.write(repr(value))


class Producer(BarrierAppDROP):
    nbytes = dlg_int_param("nbytes", 0)

    def run(self) -> None:
        data = memoryview(make_array(int(self.nbytes))).cast("B")
        for out in self.outputs:
            out.write(data)


class Consumer(BarrierAppDROP):
    result_path = dlg_string_param("result_path", "")

    def run(self) -> None:
        crc = checksum(droputils.allDropContents(self.inputs[0]))
        with open(self.result_path, "w") as f:
            f.write(str(crc))
