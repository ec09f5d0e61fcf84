package redirect_test

import (
	"errors"
	"reflect"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"github.com/mcp-oidc-proxy/mcp-oidc-proxy/pkg/redirect"
)

// op is one queued netlink operation as the fake saw it.
type op struct {
	kind  string
	table string
	fam   nftables.TableFamily
	chain *nftables.Chain
	rule  *nftables.Rule
}

// recordingConn records the batch. A fake is needed here only to assert the
// exact expressions without a kernel; kernel_test.go runs the same code
// against a real network namespace.
type recordingConn struct {
	ops      []op
	flushes  int
	flushErr error
}

var _ redirect.Conn = (*recordingConn)(nil)

func (c *recordingConn) AddTable(t *nftables.Table) *nftables.Table {
	c.ops = append(c.ops, op{kind: "add table", table: t.Name, fam: t.Family})
	return t
}
func (c *recordingConn) DelTable(t *nftables.Table) {
	c.ops = append(c.ops, op{kind: "del table", table: t.Name, fam: t.Family})
}
func (c *recordingConn) AddChain(ch *nftables.Chain) *nftables.Chain {
	c.ops = append(c.ops, op{kind: "add chain", table: ch.Table.Name, fam: ch.Table.Family, chain: ch})
	return ch
}
func (c *recordingConn) AddRule(r *nftables.Rule) *nftables.Rule {
	c.ops = append(c.ops, op{kind: "add rule", table: r.Table.Name, fam: r.Table.Family, chain: r.Chain, rule: r})
	return r
}
func (c *recordingConn) Flush() error {
	c.flushes++
	return c.flushErr
}

func TestInstallQueuesOneAtomicBatch(t *testing.T) {
	tests := []struct {
		name      string
		rule      redirect.Rule
		wantPort  []byte
		wantTo    []byte
		wantError bool
	}{
		{name: "pod port 8080 to proxy 15080", rule: redirect.Rule{Port: 8080, To: 15080}, wantPort: []byte{0x1f, 0x90}, wantTo: []byte{0x3a, 0xe8}},
		{name: "lowest and highest ports", rule: redirect.Rule{Port: 1, To: 65535}, wantPort: []byte{0x00, 0x01}, wantTo: []byte{0xff, 0xff}},
		{name: "port 0", rule: redirect.Rule{Port: 0, To: 15080}, wantError: true},
		{name: "target too large", rule: redirect.Rule{Port: 8080, To: 65536}, wantError: true},
		{name: "negative", rule: redirect.Rule{Port: -1, To: 15080}, wantError: true},
		{name: "same port", rule: redirect.Rule{Port: 8080, To: 8080}, wantError: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn := &recordingConn{}
			err := redirect.Install(conn, tt.rule)
			if tt.wantError {
				if !errors.Is(err, redirect.ErrInvalidRule) {
					t.Fatalf("Install error = %v, want ErrInvalidRule", err)
				}
				if len(conn.ops) != 0 || conn.flushes != 0 {
					t.Fatalf("an invalid rule touched the connection: %d ops, %d flushes", len(conn.ops), conn.flushes)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if conn.flushes != 1 {
				t.Fatalf("flushes = %d, want exactly 1 (one atomic batch)", conn.flushes)
			}
			var kinds []string
			for _, o := range conn.ops {
				kinds = append(kinds, o.kind)
				if o.table != redirect.TableName || o.fam != nftables.TableFamilyINet {
					t.Errorf("%s on table %v %q, want inet %q", o.kind, o.fam, o.table, redirect.TableName)
				}
			}
			wantKinds := []string{"add table", "del table", "add table", "add chain", "add rule"}
			if !reflect.DeepEqual(kinds, wantKinds) {
				t.Fatalf("batch = %v, want %v", kinds, wantKinds)
			}
			ch := conn.ops[3].chain
			if ch.Name != redirect.ChainName || ch.Type != nftables.ChainTypeNAT ||
				*ch.Hooknum != *nftables.ChainHookPrerouting || *ch.Priority != *nftables.ChainPriorityNATDest {
				t.Errorf("chain = %q type %q hook %d prio %d, want prerouting nat hook prerouting priority dstnat",
					ch.Name, ch.Type, *ch.Hooknum, *ch.Priority)
			}
			r := conn.ops[4].rule
			if r.Chain != ch {
				t.Error("rule is not in the chain added in the same batch")
			}
			want := []expr.Any{
				&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{6}},
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: tt.wantPort},
				&expr.Immediate{Register: 1, Data: tt.wantTo},
				&expr.Redir{RegisterProtoMin: 1},
			}
			if !reflect.DeepEqual(r.Exprs, want) {
				for i := range max(len(r.Exprs), len(want)) {
					var g, w expr.Any
					if i < len(r.Exprs) {
						g = r.Exprs[i]
					}
					if i < len(want) {
						w = want[i]
					}
					if !reflect.DeepEqual(g, w) {
						t.Errorf("expression %d:\n got %+v\nwant %+v", i, g, w)
					}
				}
			}
		})
	}
}

func TestFlushErrorsAreWrapped(t *testing.T) {
	kernel := errors.New("netlink receive: operation not permitted")
	tests := []struct {
		name string
		call func(redirect.Conn) error
	}{
		{"install", func(c redirect.Conn) error { return redirect.Install(c, redirect.Rule{Port: 80, To: 8080}) }},
		{"remove", redirect.Remove},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call(&recordingConn{flushErr: kernel})
			if !errors.Is(err, kernel) {
				t.Fatalf("error %v does not wrap the kernel error", err)
			}
			if errors.Is(err, redirect.ErrInvalidRule) {
				t.Fatal("a kernel failure is reported as an invalid rule")
			}
		})
	}
}

func TestRemoveIsOneBatchThatToleratesAMissingTable(t *testing.T) {
	conn := &recordingConn{}
	if err := redirect.Remove(conn); err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, o := range conn.ops {
		kinds = append(kinds, o.kind)
	}
	if !reflect.DeepEqual(kinds, []string{"add table", "del table"}) || conn.flushes != 1 {
		t.Fatalf("batch = %v with %d flushes, want [add table del table] once", kinds, conn.flushes)
	}
}
