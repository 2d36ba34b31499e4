// Package pagination implements cursor pagination for Go services.
package pagination
