package productsbus

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/portico-mesh/portico/services/platform/events"
	"github.com/portico-mesh/portico/services/platform/identity"
)

// fakeStore is an in-memory Storer whose version race is scripted: before
// each of the first races Update calls, a "concurrent writer" stores its
// own change, so the caller's write finds another version and fails with
// ErrVersionChanged, exactly as the conditional UPDATE does.
type fakeStore struct {
	products map[int64]Product
	// races is how many Update calls lose to a concurrent writer.
	races int
	// updateErr, when set, is what Update fails with instead.
	updateErr error

	queries, updates int
	events           []events.Envelope
}

func newFakeStore(ps ...Product) *fakeStore {
	s := &fakeStore{products: map[int64]Product{}}
	for _, p := range ps {
		s.products[p.ID] = p
	}
	return s
}

// concurrentWrite is the other writer's change: one unit of stock sold.
func (s *fakeStore) concurrentWrite(id int64) {
	p := s.products[id]
	p.StockQuantity--
	p.Version++
	s.products[id] = p
}

func (s *fakeStore) Create(context.Context, NewProduct, EventFunc, Receipt) (Product, error) {
	return Product{}, errors.New("not used")
}

func (s *fakeStore) Update(_ context.Context, p Product, event EventFunc) (Product, error) {
	s.updates++
	if s.updateErr != nil {
		return Product{}, s.updateErr
	}
	if s.races > 0 {
		s.races--
		s.concurrentWrite(p.ID)
	}
	current, ok := s.products[p.ID]
	if !ok || current.Version != p.Version {
		return Product{}, ErrVersionChanged
	}
	p.Version++
	ev, err := event(p)
	if err != nil {
		return Product{}, err
	}
	s.products[p.ID] = p
	s.events = append(s.events, ev)
	return p, nil
}

func (s *fakeStore) Delete(context.Context, int64, EventFunc) (Product, error) {
	return Product{}, errors.New("not used")
}

func (s *fakeStore) QueryByID(_ context.Context, id int64) (Product, error) {
	s.queries++
	p, ok := s.products[id]
	if !ok {
		return Product{}, ErrNotFound
	}
	return p, nil
}

func (s *fakeStore) Query(context.Context, QueryFilter, Page) ([]Product, error) {
	return nil, errors.New("not used")
}

var _ Storer = (*fakeStore)(nil)

func TestUpdateRetriesAndPreconditions(t *testing.T) {
	caller := identity.Identity{UserID: "u-1", Roles: []string{"user"}}
	name := "renamed"
	rename := UpdateProduct{Name: &name}
	lamp := Product{ID: 7, Name: "lamp", Price: mustParsePrice(t, "15.00"), StockQuantity: 10, Version: 3}

	tests := []struct {
		name      string
		races     int
		pc        Precondition
		update    UpdateProduct
		wantErr   error
		want      Product // when wantErr is nil
		wantCalls int     // Update calls
		wantReads int     // QueryByID calls
	}{
		{
			name: "no race", update: rename, wantCalls: 1, wantReads: 1,
			want: Product{ID: 7, Name: name, Price: lamp.Price, StockQuantity: 10, Version: 4},
		},
		{
			// Re-read and re-applied: the other writer's sale is kept.
			name: "a lost race is retried on the fresh version", races: 1, update: rename, wantCalls: 2, wantReads: 2,
			want: Product{ID: 7, Name: name, Price: lamp.Price, StockQuantity: 9, Version: 5},
		},
		{
			name: "the last attempt may still win", races: updateAttempts - 1, update: rename, wantCalls: updateAttempts, wantReads: updateAttempts,
			want: Product{ID: 7, Name: name, Price: lamp.Price, StockQuantity: 10 - (updateAttempts - 1), Version: 3 + updateAttempts},
		},
		{
			name: "If-Match: * is retried like no precondition", races: 1, update: rename, wantCalls: 2, wantReads: 2,
			pc:   Precondition{Present: true, Any: true},
			want: Product{ID: 7, Name: name, Price: lamp.Price, StockQuantity: 9, Version: 5},
		},
		{
			name: "every attempt lost: conflict", races: updateAttempts, update: rename,
			wantErr: ErrConflict, wantCalls: updateAttempts, wantReads: updateAttempts,
		},
		{
			name: "a pinned version that matched is not retried", races: 1, update: rename,
			pc: Precondition{Present: true, Versions: []int64{3}}, wantErr: ErrPreconditionFailed, wantCalls: 1, wantReads: 1,
		},
		{
			name: "a pinned version among others matches", update: rename, wantCalls: 1, wantReads: 1,
			pc:   Precondition{Present: true, Versions: []int64{2, 3}},
			want: Product{ID: 7, Name: name, Price: lamp.Price, StockQuantity: 10, Version: 4},
		},
		{
			name: "a pinned version that is not current", update: rename,
			pc: Precondition{Present: true, Versions: []int64{2}}, wantErr: ErrPreconditionFailed, wantCalls: 0, wantReads: 1,
		},
		{
			name: "a tag naming no version matches nothing", update: rename,
			pc: Precondition{Present: true}, wantErr: ErrPreconditionFailed, wantCalls: 0, wantReads: 1,
		},
		{
			name: "an empty update writes nothing", races: 1, update: UpdateProduct{}, wantCalls: 0, wantReads: 1,
			want: lamp,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := newFakeStore(lamp)
			store.races = tt.races
			b := NewBusiness(store)
			now := time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)
			b.now = func() time.Time { return now }

			got, err := b.Update(context.Background(), caller, lamp.ID, tt.update, tt.pc)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Update error = %v, want %v", err, tt.wantErr)
			}
			if store.updates != tt.wantCalls {
				t.Errorf("%d store updates, want %d", store.updates, tt.wantCalls)
			}
			// A pinned precondition fails at once: no second read.
			if store.queries != tt.wantReads {
				t.Errorf("%d store reads, want %d", store.queries, tt.wantReads)
			}
			if tt.wantErr != nil {
				if len(store.events) != 0 {
					t.Errorf("a failed update stored events %v", store.events)
				}
				return
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("updated product (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.want, store.products[lamp.ID]); diff != "" {
				t.Errorf("stored product (-want +got):\n%s", diff)
			}
			if tt.update.Empty() {
				if len(store.events) != 0 {
					t.Errorf("an empty update stored events %v", store.events)
				}
				return
			}
			if len(store.events) != 1 || store.events[0].Type != EventUpdated || store.events[0].Subject != subject(lamp.ID) {
				t.Fatalf("events %+v, want one %s of %s", store.events, EventUpdated, subject(lamp.ID))
			}
		})
	}
}

func TestUpdateFailuresAreNotRetried(t *testing.T) {
	caller := identity.Identity{UserID: "u-1"}
	name := "x"
	lamp := Product{ID: 7, Name: "lamp", Version: 1}

	t.Run("store error", func(t *testing.T) {
		broken := errors.New("connection reset")
		store := newFakeStore(lamp)
		store.updateErr = broken
		_, err := NewBusiness(store).Update(context.Background(), caller, lamp.ID, UpdateProduct{Name: &name}, Precondition{})
		if !errors.Is(err, broken) || errors.Is(err, ErrConflict) || store.updates != 1 {
			t.Errorf("error %v after %d updates, want the store's error after 1", err, store.updates)
		}
	})
	t.Run("not found", func(t *testing.T) {
		store := newFakeStore()
		_, err := NewBusiness(store).Update(context.Background(), caller, 8, UpdateProduct{Name: &name}, Precondition{})
		if !errors.Is(err, ErrNotFound) || store.updates != 0 {
			t.Errorf("error %v after %d updates, want ErrNotFound after none", err, store.updates)
		}
	})
	t.Run("anonymous", func(t *testing.T) {
		store := newFakeStore(lamp)
		_, err := NewBusiness(store).Update(context.Background(), identity.Identity{}, lamp.ID, UpdateProduct{Name: &name}, Precondition{})
		if !errors.Is(err, ErrUnauthenticated) || store.queries != 0 {
			t.Errorf("error %v after %d reads, want ErrUnauthenticated before any", err, store.queries)
		}
	})
}

func mustParsePrice(t *testing.T, s string) Price {
	t.Helper()
	p, err := ParsePrice(s)
	if err != nil {
		t.Fatal(fmt.Errorf("price %q: %w", s, err))
	}
	return p
}
