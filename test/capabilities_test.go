package e2e

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// netInternals are the assertions a protocol package may make on an
// interface: they reach into a connection or transport of the standard
// library (or its wrapper), never switch on what the node was given.
var netInternals = []string{
	"udpConn",              // *net.UDPConn's allocation-free reads and writes
	"CloseWrite",           // a TCP connection's half close
	"RawConn",              // the TCP connection under a PROXY protocol one
	"CloseIdleConnections", // an http.RoundTripper's idle connections
}

// pendingCapabilities are capability switches still made at run time,
// with the room that is to make them explicit. Remove an entry when its
// assertion is gone; the test says so when one is stale.
var pendingCapabilities = map[string]string{}

// TestNoCapabilityAssertions: no protocol package switches a capability
// on by asserting an interface at run time. What a server may use is a
// field of its Config, nil when off, that the compiler checks where cmd
// fills it in. An assertion to an interface this module declares, or to an
// anonymous one (or a type switch case naming one), is reported unless it
// reaches a connection's internals.
func TestNoCapabilityAssertions(t *testing.T) {
	declared := map[string]bool{} // interfaces of protocols/ and stream/
	type assertion struct {
		pos  string
		name string
		anon bool
	}
	var asserts []assertion
	fset := token.NewFileSet()
	for _, root := range []string{"../protocols", "../stream"} {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
			if err != nil {
				return err
			}
			inProtocols := strings.HasPrefix(path, "../protocols")
			ast.Inspect(f, func(n ast.Node) bool {
				switch n := n.(type) {
				case *ast.TypeSpec:
					if _, ok := n.Type.(*ast.InterfaceType); ok {
						declared[n.Name.Name] = true
					}
				case *ast.TypeSwitchStmt:
					if !inProtocols {
						return true
					}
					for _, c := range n.Body.List {
						for _, typ := range c.(*ast.CaseClause).List {
							if id, ok := typ.(*ast.Ident); ok {
								asserts = append(asserts, assertion{fset.Position(typ.Pos()).String(), id.Name, false})
							}
						}
					}
				case *ast.TypeAssertExpr:
					if !inProtocols || n.Type == nil {
						return true
					}
					pos := fset.Position(n.Pos()).String()
					switch typ := n.Type.(type) {
					case *ast.Ident:
						asserts = append(asserts, assertion{pos, typ.Name, false})
					case *ast.SelectorExpr:
						if x, ok := typ.X.(*ast.Ident); ok && x.Name == "stream" {
							asserts = append(asserts, assertion{pos, typ.Sel.Name, false})
						}
					case *ast.InterfaceType:
						for _, m := range typ.Methods.List {
							for _, name := range m.Names {
								asserts = append(asserts, assertion{pos, name.Name, true})
							}
						}
					}
				}
				return true
			})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	for _, a := range asserts {
		if !a.anon && !declared[a.name] {
			continue // a concrete type
		}
		seen[a.name] = true
		if slices.Contains(netInternals, a.name) || pendingCapabilities[a.name] != "" {
			continue
		}
		t.Errorf("%s: asserts %s at run time; make it a Config field (nil = off) that cmd fills in", a.pos, a.name)
	}
	for name, room := range pendingCapabilities {
		if !seen[name] {
			t.Errorf("pendingCapabilities lists %s (%s), which nothing asserts any more: remove it", name, room)
		}
	}
}
