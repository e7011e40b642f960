package productsdb_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/portico-mesh/portico/mesh/localenv/localenvtest"
	"github.com/portico-mesh/portico/migrations"
	"github.com/portico-mesh/portico/services/platform/events"
	"github.com/portico-mesh/portico/services/platform/outbox"
	"github.com/portico-mesh/portico/services/platform/pgstore/pgtest"
	"github.com/portico-mesh/portico/services/platform/telemetry"
	"github.com/portico-mesh/portico/services/products/productsbus"
	"github.com/portico-mesh/portico/services/products/productsdb"
)

func TestMain(m *testing.M) {
	os.Exit(localenvtest.Run(m, localenvtest.Postgres))
}

func newStore(t *testing.T) (*productsdb.Store, *pgxpool.Pool) {
	t.Helper()
	pool := pgtest.NewPool(t, migrations.Products())
	return productsdb.NewStore(pool, outbox.NewWriter(telemetry.Tracing{})), pool
}

func mustPrice(t *testing.T, s string) productsbus.Price {
	t.Helper()
	p, err := productsbus.ParsePrice(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// testEvent records what the store hands it and builds a minimal event.
func testEvent(typ string, seen *[]productsbus.Product) productsbus.EventFunc {
	return func(p productsbus.Product) (events.Envelope, error) {
		*seen = append(*seen, p)
		return events.New(typ, "test", "products/x", map[string]int64{"id": p.ID, "version": p.Version}, time.Now())
	}
}

type outboxRow struct {
	Type string
	Data map[string]any
}

func outboxRows(t *testing.T, pool *pgxpool.Pool) []outboxRow {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT event_type, payload FROM outbox ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []outboxRow
	for rows.Next() {
		var (
			r       outboxRow
			payload []byte
		)
		if err := rows.Scan(&r.Type, &payload); err != nil {
			t.Fatal(err)
		}
		var ev struct {
			Data map[string]any `json:"data"`
		}
		if err := json.Unmarshal(payload, &ev); err != nil {
			t.Fatal(err)
		}
		r.Data = ev.Data
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

var ignoreTimes = cmpopts.IgnoreFields(productsbus.Product{}, "CreatedAt", "UpdatedAt")

func TestCreateAndQueryKeepExactPrices(t *testing.T) {
	store, pool := newStore(t)
	ctx := context.Background()
	for _, text := range []string{"19.99", "1200.00", "0.10", "0.00", "9999999999.99"} {
		var seen []productsbus.Product
		created, err := store.Create(ctx, productsbus.NewProduct{
			Name: "item " + text, Description: "d", Price: mustPrice(t, text), StockQuantity: 7,
		}, testEvent(productsbus.EventCreated, &seen), productsbus.Receipt{})
		if err != nil {
			t.Fatalf("create %s: %v", text, err)
		}
		if created.ID == 0 || created.Version != 1 || created.CreatedAt.IsZero() || !created.UpdatedAt.Equal(created.CreatedAt) {
			t.Errorf("created = %+v, want an id, version 1 and timestamps", created)
		}
		if created.Price.String() != text {
			t.Errorf("created price = %s, want %s", created.Price, text)
		}
		if diff := cmp.Diff([]productsbus.Product{created}, seen); diff != "" {
			t.Errorf("event saw a different row (-returned +seen):\n%s", diff)
		}
		got, err := store.QueryByID(ctx, created.ID)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(created, got); diff != "" {
			t.Errorf("query differs from create (-created +queried):\n%s", diff)
		}
	}
	if n := len(outboxRows(t, pool)); n != 5 {
		t.Errorf("outbox has %d rows, want one per create (5)", n)
	}
}

func TestQueryByIDNotFound(t *testing.T) {
	store, _ := newStore(t)
	if _, err := store.QueryByID(context.Background(), 424242); !errors.Is(err, productsbus.ErrNotFound) {
		t.Fatalf("error = %v, want ErrNotFound", err)
	}
}

func TestUpdateIsConditionalOnVersion(t *testing.T) {
	store, pool := newStore(t)
	ctx := context.Background()
	var seen []productsbus.Product
	p, err := store.Create(ctx, productsbus.NewProduct{Name: "lamp", Price: mustPrice(t, "10.00"), StockQuantity: 3},
		testEvent(productsbus.EventCreated, &seen), productsbus.Receipt{})
	if err != nil {
		t.Fatal(err)
	}

	next := p
	next.Name, next.Price, next.StockQuantity = "desk lamp", mustPrice(t, "12.50"), 2
	updated, err := store.Update(ctx, next, testEvent(productsbus.EventUpdated, &seen))
	if err != nil {
		t.Fatal(err)
	}
	want := next
	want.Version = 2
	if diff := cmp.Diff(want, updated, ignoreTimes); diff != "" {
		t.Errorf("updated (-want +got):\n%s", diff)
	}
	if !updated.UpdatedAt.After(p.UpdatedAt) && !updated.UpdatedAt.Equal(p.UpdatedAt) {
		t.Errorf("updated_at went backwards: %v -> %v", p.UpdatedAt, updated.UpdatedAt)
	}

	// Writing again from version 1 must not overwrite version 2, nor
	// leave an event behind.
	stale := p
	stale.Name = "lost update"
	if _, err := store.Update(ctx, stale, testEvent(productsbus.EventUpdated, &seen)); !errors.Is(err, productsbus.ErrVersionChanged) {
		t.Fatalf("stale update error = %v, want ErrVersionChanged", err)
	}
	got, err := store.QueryByID(ctx, p.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(updated, got); diff != "" {
		t.Errorf("stale update changed the row (-want +got):\n%s", diff)
	}
	// Updating a row that is gone is the same: the version is not there.
	gone := p
	gone.ID = 999999
	if _, err := store.Update(ctx, gone, testEvent(productsbus.EventUpdated, &seen)); !errors.Is(err, productsbus.ErrVersionChanged) {
		t.Fatalf("update of a missing row: error = %v, want ErrVersionChanged", err)
	}

	rows := outboxRows(t, pool)
	gotTypes := []string{}
	for _, r := range rows {
		gotTypes = append(gotTypes, r.Type)
	}
	if diff := cmp.Diff([]string{productsbus.EventCreated, productsbus.EventUpdated}, gotTypes); diff != "" {
		t.Errorf("outbox event types (-want +got):\n%s", diff)
	}
}

func TestDelete(t *testing.T) {
	store, pool := newStore(t)
	ctx := context.Background()
	var seen []productsbus.Product
	p, err := store.Create(ctx, productsbus.NewProduct{Name: "chair", Price: mustPrice(t, "49.00")}, testEvent(productsbus.EventCreated, &seen), productsbus.Receipt{})
	if err != nil {
		t.Fatal(err)
	}
	deleted, err := store.Delete(ctx, p.ID, testEvent(productsbus.EventDeleted, &seen))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(p, deleted); diff != "" {
		t.Errorf("delete returned (-want +got):\n%s", diff)
	}
	if _, err := store.QueryByID(ctx, p.ID); !errors.Is(err, productsbus.ErrNotFound) {
		t.Errorf("query after delete: %v, want ErrNotFound", err)
	}
	if _, err := store.Delete(ctx, p.ID, testEvent(productsbus.EventDeleted, &seen)); !errors.Is(err, productsbus.ErrNotFound) {
		t.Errorf("second delete: %v, want ErrNotFound", err)
	}
	if n := len(outboxRows(t, pool)); n != 2 {
		t.Errorf("outbox has %d rows, want 2 (created, deleted)", n)
	}
}

// A write whose event cannot be built is not stored either.
func TestWriteAndEventAreAtomic(t *testing.T) {
	store, pool := newStore(t)
	ctx := context.Background()
	failing := func(productsbus.Product) (events.Envelope, error) {
		return events.Envelope{}, errors.New("no event today")
	}

	if _, err := store.Create(ctx, productsbus.NewProduct{Name: "ghost", Price: mustPrice(t, "1.00")}, failing, productsbus.Receipt{}); err == nil {
		t.Fatal("create succeeded although its event failed")
	}
	page, err := store.Query(ctx, productsbus.QueryFilter{}, productsbus.Page{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(page) != 0 {
		t.Errorf("the failed create left rows: %+v", page)
	}

	var seen []productsbus.Product
	p, err := store.Create(ctx, productsbus.NewProduct{Name: "real", Price: mustPrice(t, "1.00")}, testEvent(productsbus.EventCreated, &seen), productsbus.Receipt{})
	if err != nil {
		t.Fatal(err)
	}
	changed := p
	changed.Name = "changed"
	if _, err := store.Update(ctx, changed, failing); err == nil {
		t.Fatal("update succeeded although its event failed")
	}
	if _, err := store.Delete(ctx, p.ID, failing); err == nil {
		t.Fatal("delete succeeded although its event failed")
	}
	got, err := store.QueryByID(ctx, p.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(p, got); diff != "" {
		t.Errorf("failed writes changed the row (-want +got):\n%s", diff)
	}
	if n := len(outboxRows(t, pool)); n != 1 {
		t.Errorf("outbox has %d rows, want only the successful create's", n)
	}
}

func TestQueryPagesAndFilters(t *testing.T) {
	store, _ := newStore(t)
	ctx := context.Background()
	names := []string{"100% Cotton Shirt", "Cotton_Candy", "cotton socks", "Silk Tie", `Back\slash`, "COTTONWOOD"}
	ids := map[string]int64{}
	for _, n := range names {
		var seen []productsbus.Product
		p, err := store.Create(ctx, productsbus.NewProduct{Name: n, Price: mustPrice(t, "1.00")}, testEvent(productsbus.EventCreated, &seen), productsbus.Receipt{})
		if err != nil {
			t.Fatal(err)
		}
		ids[n] = p.ID
	}
	query := func(contains string, page productsbus.Page) []string {
		t.Helper()
		ps, err := store.Query(ctx, productsbus.QueryFilter{NameContains: contains}, page)
		if err != nil {
			t.Fatal(err)
		}
		out := []string{}
		for _, p := range ps {
			out = append(out, p.Name)
		}
		return out
	}
	tests := []struct {
		contains string
		want     []string
	}{
		{"", names},
		{"cotton", []string{"100% Cotton Shirt", "Cotton_Candy", "cotton socks", "COTTONWOOD"}},
		{"%", []string{"100% Cotton Shirt"}},
		{"_", []string{"Cotton_Candy"}},
		{"n_c", []string{"Cotton_Candy"}},
		{`\`, []string{`Back\slash`}},
		{"0% c", []string{"100% Cotton Shirt"}},
		{"nothing like it", []string{}},
	}
	for _, tc := range tests {
		if diff := cmp.Diff(tc.want, query(tc.contains, productsbus.Page{Limit: 100})); diff != "" {
			t.Errorf("name contains %q (-want +got):\n%s", tc.contains, diff)
		}
	}
	// Keyset pages: after an id, in id order, at most Limit.
	if diff := cmp.Diff(names[2:4], query("", productsbus.Page{AfterID: ids[names[1]], Limit: 2})); diff != "" {
		t.Errorf("page after %q (-want +got):\n%s", names[1], diff)
	}
}
