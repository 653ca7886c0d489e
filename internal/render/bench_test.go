package render

import (
	"testing"

	"github.com/hastack/hastack/internal/secrets"
	"github.com/hastack/hastack/internal/spec"
)

func benchSpec(b *testing.B, controllers, computes int) []byte {
	b.Helper()
	data, err := spec.ExampleYAML(spec.ExampleOptions{Name: "bench", Controllers: controllers, Computes: computes})
	if err != nil {
		b.Fatal(err)
	}
	return data
}

// benchmarkRender measures load + validate + render of every node, which is
// what 'hastack render' and every deploy pay before touching a host.
func benchmarkRender(b *testing.B, controllers, computes int) {
	data := benchSpec(b, controllers, computes)
	s := secrets.Fixed{}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c, ps := spec.Parse(data)
		if ps.Err() != nil {
			b.Fatal(ps.Err())
		}
		nodes, err := Cluster(c, s)
		if err != nil || len(nodes) != controllers+computes {
			b.Fatal(err)
		}
	}
}

func BenchmarkRender3Controllers(b *testing.B) { benchmarkRender(b, 3, 0) }
func BenchmarkRender500Nodes(b *testing.B)     { benchmarkRender(b, 5, 495) }

func BenchmarkParse500Nodes(b *testing.B) {
	data := benchSpec(b, 5, 495)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, ps := spec.Parse(data); ps.Err() != nil {
			b.Fatal(ps.Err())
		}
	}
}
