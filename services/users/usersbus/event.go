package usersbus

import (
	"slices"

	"github.com/portico-mesh/portico/services/platform/events"
)

// Event types, source and subjects of the Users service. Consumers bind on
// the types; they never change once published.
const (
	EventSource      = "portico/users"
	EventUserCreated = "user.created"
	EventUserUpdated = "user.updated"
	EventUserDeleted = "user.deleted"
)

// EventSubject is the subject of events about the user with id.
func EventSubject(id int64) string { return "users/" + idString(id) }

// UserEventData is the data of user.created and user.updated: the state
// after the change. Version orders the updates of one user, so a consumer
// can drop an older state that arrives late. It never carries the password
// or its hash.
type UserEventData struct {
	ID       int64    `json:"id"`
	Username string   `json:"username"`
	Email    string   `json:"email"`
	IsActive bool     `json:"is_active"`
	Roles    []string `json:"roles"`
	Version  int64    `json:"version"`
}

// UserDeletedData is the data of user.deleted.
type UserDeletedData struct {
	ID int64 `json:"id"`
}

func toEventData(u User) UserEventData {
	roles := slices.Clone(u.Roles)
	if roles == nil {
		roles = []string{}
	}
	return UserEventData{
		ID: u.ID, Username: u.Username, Email: u.Email,
		IsActive: u.IsActive, Roles: roles, Version: u.Version,
	}
}

func (b *Business) createdEvent(u User) (events.Envelope, error) {
	return events.New(EventUserCreated, EventSource, EventSubject(u.ID), toEventData(u), b.now())
}

func (b *Business) updatedEvent(u User) (events.Envelope, error) {
	return events.New(EventUserUpdated, EventSource, EventSubject(u.ID), toEventData(u), b.now())
}

func (b *Business) deletedEvent(u User) (events.Envelope, error) {
	return events.New(EventUserDeleted, EventSource, EventSubject(u.ID), UserDeletedData{ID: u.ID}, b.now())
}
