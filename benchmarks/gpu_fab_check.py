"""On a GPU machine: FAB on the GPU backend against the CPU, and the standard suite on the card (one-off check)."""
import time, numpy as np, minirobust as mr
from minirobust.robust import fab, run_suite
from minirobust.data import separable_images
x, y = separable_images(60, seed=0)
cpu = mr.nets.paper_mnist(seed=0); gpu = mr.nets.paper_mnist(seed=0).to("gpu")
for norm in ("inf", "2", "1"):
    a, b = fab(cpu, x, y, norm=norm, steps=10), fab(gpu, x, y, norm=norm, steps=10).to_host()
    print("fab", norm, "success cpu", float(a.success.mean()), "gpu", float(b.success.mean()),
          "max |norm diff|", float(np.abs(np.where(a.success & b.success, a.norms - b.norms, 0)).max()))
t = time.time(); r = run_suite(gpu, x[:20], y[:20], "inf", 0.1, version="standard", log=print)
print("standard suite on GPU:", r.robust_acc, f"{time.time() - t:.1f} s")
