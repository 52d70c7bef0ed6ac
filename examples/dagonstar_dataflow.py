"""DAGonStar's dataflow demo: A writes output/f1.txt, B and C read it through workflow://, D joins theirs."""

from dropflow.api import Pipeline, shell

with Pipeline("dataflow-demo") as demo:
    shell("mkdir -p output; echo from A > output/f1.txt", name="A")
    shell("echo from B > f2.txt; cat workflow:///A/output/f1.txt >> f2.txt", name="B")
    shell("echo from C > f2.txt; cat workflow:///A/output/f1.txt >> f2.txt", name="C")
    d = shell("cat workflow:///B/f2.txt workflow:///C/f2.txt > f3.txt; cat f3.txt", name="D")

if __name__ == "__main__":
    demo.run()
    print(d.result())
