"""The seed notebook's workflow, run under IPython's InteractiveShell so %px magics are real.

usage: python workflow.py CLIENT_JSON N_ENGINES   -> prints one JSON object
       python workflow.py profile=NAME N_ENGINES  (ipp.Client(profile=NAME), as the seed does)
"""
import io, json, sys, contextlib

from IPython.core.interactiveshell import InteractiveShell
import numpy as np
import ipyparallel as ipp

from steps import out, step

shell = InteractiveShell.instance()
n = int(sys.argv[2])
target = sys.argv[1]
if target.startswith("profile="):
    rc = ipp.Client(profile=target[len("profile="):], timeout=30)
else:
    rc = ipp.Client(target, timeout=30)
rc.wait_for_engines(n, timeout=90)
out["ids"] = rc.ids
out["len_view"] = len(rc[:])
view = rc[:]
view.activate()
view.block = True

def px(line):
    ar = shell.run_line_magic("px", line)
    return ar

step("imports", lambda: (px("from mpi4py import MPI"), px("import numpy as np"), True)[-1])
def size_step():
    status = px("size = MPI.COMM_WORLD.Get_size()")
    return [int(v) for v in view["size"]]
step("size", size_step)

def psum(a):
    locsum = np.sum(a)
    rcvBuf = np.array(0.0, 'd')
    MPI.COMM_WORLD.Allreduce([locsum, MPI.DOUBLE], [rcvBuf, MPI.DOUBLE], op=MPI.SUM)
    return rcvBuf

def scatter_step():
    view.block = False
    st = view.scatter('a', np.arange(32, dtype='float'))
    with contextlib.redirect_stdout(io.StringIO()):
        st.wait_interactive()
    view.block = True
    return [list(map(float, chunk)) for chunk in view['a']]
step("scatter", scatter_step)
step("push_psum", lambda: (view.push(dict(psum=psum)), True)[-1])

def px_psum():
    view.block = False
    st = shell.run_line_magic("px", "totalsum = psum(a)")
    with contextlib.redirect_stdout(io.StringIO()):
        st.wait_interactive()
    view.block = True
    return [repr(v) for v in view['totalsum']]
step("px_totalsum", px_psum)

def exec_psum():
    view.block = False
    st = view.execute('totalsum_exec=psum(a)')
    st.get(timeout=60)
    view.block = True
    return [repr(v) for v in view['totalsum_exec']]
step("exec_totalsum", exec_psum)

def cell_magic():
    shell.run_cell_magic("px", "", "cellvar = MPI.COMM_WORLD.Get_rank() * 10")
    return list(view["cellvar"])
step("px_cell", cell_magic)

rc.close()
print(json.dumps(out))
