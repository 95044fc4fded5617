package master

import (
	"math"
	"testing"

	"kiln/transport/wire"
)

// TestIndexHostileLoadFigures: a slave's load report is a peer's word. A
// CPU figure that is NaN has no place in the free slaves' order (every
// comparison with it is false): the treap then cannot find the slaves it
// holds, so one is kept after it left or was drained and another is lost.
// Whatever figures a slave reports, the index must agree with the scan,
// never pick a drained or unhealthy slave, and still pick the others.
func TestIndexHostileLoadFigures(t *testing.T) {
	for _, cpu := range []float64{math.NaN(), math.Inf(1), math.Inf(-1), -1e308, 1e308} {
		r := newSchedRig(t)
		var scs []*slaveConn
		for _, n := range []string{"a", "b", "c", "d", "e", "f"} {
			scs = append(scs, r.register(n, 2, false, false, wire.Toolchain{Language: "python"}))
		}
		evil := scs[2]
		for i, sc := range scs {
			r.load(sc, float64(10*i), "")
		}
		r.load(evil, cpu, "")
		for round := 0; round < 3; round++ {
			for i, sc := range scs {
				if sc != evil {
					r.load(sc, float64((7*i+13*round)%100), "")
				}
			}
			r.pick(py, "")
		}
		r.load(evil, cpu, "going away")
		for i := 0; i < 8; i++ {
			got := r.pick(py, "")
			if got == "c" || got == "" {
				t.Fatalf("cpu %v: picked %q with c unhealthy and five free slaves", cpu, got)
			}
			for _, sc := range scs {
				if sc.id.Name == got {
					r.assign(sc)
				}
			}
		}
	}
}
