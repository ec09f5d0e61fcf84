// Package redirect installs the port takeover of the `redirect` mode: an
// nftables NAT rule in the pod's network namespace that sends inbound TCP for
// the protected port to the proxy's port. It talks netlink directly
// (github.com/google/nftables), so the init container needs no iptables or
// nft binary, only NET_ADMIN.
//
// The rule lives in its own table, `inet mcp_oidc_proxy`, so it never touches
// rules installed by anything else (a CNI plugin, a service mesh) and can be
// replaced or removed as a unit. The chain hooks prerouting, which only sees
// packets arriving from outside the namespace: the proxy's own connections
// to the app on 127.0.0.1 go through output and are not redirected back to
// the proxy. NAT in the inet family needs Linux >= 5.2.
package redirect

import (
	"errors"
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// TableName is the nftables table owned by the proxy (family inet, so one
// rule covers IPv4 and IPv6).
const TableName = "mcp_oidc_proxy"

// ChainName is the NAT chain inside TableName.
const ChainName = "prerouting"

// ErrInvalidRule is wrapped by every validation error, so callers can tell a
// usage mistake (exit 2) from a kernel failure (exit 1) with errors.Is.
var ErrInvalidRule = errors.New("invalid redirect rule")

// Rule redirects inbound TCP for Port to the local port To. Ports are ints,
// not uint16, so that out-of-range values from flags are reported rather
// than silently truncated.
type Rule struct {
	Port int
	To   int
}

// Validate checks both ports are in 1..65535 and differ (redirecting a port
// to itself would be a no-op that hides a configuration mistake).
func (r Rule) Validate() error {
	var errs []error
	if r.Port < 1 || r.Port > 65535 {
		errs = append(errs, fmt.Errorf("%w: port %d is not in 1-65535", ErrInvalidRule, r.Port))
	}
	if r.To < 1 || r.To > 65535 {
		errs = append(errs, fmt.Errorf("%w: target port %d is not in 1-65535", ErrInvalidRule, r.To))
	}
	if len(errs) == 0 && r.Port == r.To {
		errs = append(errs, fmt.Errorf("%w: port and target port are both %d", ErrInvalidRule, r.Port))
	}
	return errors.Join(errs...)
}

// Conn is the part of an nftables connection Install and Remove use. Batched
// calls are queued and sent atomically by Flush. *nftables.Conn implements it;
// tests use a recording fake to check the exact expressions.
type Conn interface {
	AddTable(t *nftables.Table) *nftables.Table
	DelTable(t *nftables.Table)
	AddChain(c *nftables.Chain) *nftables.Chain
	AddRule(r *nftables.Rule) *nftables.Rule
	Flush() error
}

var _ Conn = (*nftables.Conn)(nil)

// table is the proxy's table. A fresh value each time: the library keeps
// state on the objects it is handed.
func table() *nftables.Table {
	return &nftables.Table{Family: nftables.TableFamilyINet, Name: TableName}
}

// Install replaces the proxy's table with one holding exactly rule, in a
// single atomic batch: add the table (a no-op if it exists), delete it with
// everything in it, add it again with the chain and the rule. Running it
// twice therefore leaves one rule, and a failure leaves the previous state.
func Install(conn Conn, rule Rule) error {
	if err := rule.Validate(); err != nil {
		return err
	}
	t := table()
	conn.AddTable(t)
	conn.DelTable(t)
	t = conn.AddTable(table())
	chain := conn.AddChain(&nftables.Chain{
		Name:     ChainName,
		Table:    t,
		Type:     nftables.ChainTypeNAT,
		Hooknum:  nftables.ChainHookPrerouting,
		Priority: nftables.ChainPriorityNATDest,
	})
	conn.AddRule(&nftables.Rule{Table: t, Chain: chain, Exprs: Exprs(rule)})
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("installing nftables redirect of tcp port %d to %d: %w", rule.Port, rule.To, err)
	}
	return nil
}

// Remove deletes the proxy's table and its rule. It succeeds when the table
// does not exist (add-then-delete in one batch), so it can always be run.
func Remove(conn Conn) error {
	conn.AddTable(table())
	conn.DelTable(table())
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("removing nftables table inet %s: %w", TableName, err)
	}
	return nil
}

// Exprs is the rule body `meta l4proto tcp tcp dport <Port> redirect to
// :<To>`, exactly as nft(8) compiles it for an inet table. Exported so the
// kernel test can compare what it reads back.
func Exprs(rule Rule) []expr.Any {
	return []expr.Any{
		// [ meta load l4proto => reg 1 ]
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		// [ cmp eq reg 1 0x06 ]
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		// [ payload load 2b @ transport header + 2 => reg 1 ] (destination port)
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		// [ cmp eq reg 1 <Port> ]
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(uint16(rule.Port))},
		// [ immediate reg 1 <To> ]
		&expr.Immediate{Register: 1, Data: binaryutil.BigEndian.PutUint16(uint16(rule.To))},
		// [ redir proto_min reg 1 ] (the kernel sets NF_NAT_RANGE_PROTO_SPECIFIED)
		&expr.Redir{RegisterProtoMin: 1},
	}
}
