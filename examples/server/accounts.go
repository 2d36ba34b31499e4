package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"time"

	"github.com/asynckit/asynckit/txn"
)

// account is an account as the API shows it. Money is an integer number
// of minor units (cents), never a float.
type account struct {
	ID        int64     `json:"id" min:"1"`
	UserID    *int64    `json:"user_id,omitempty" doc:"The owner, if the account has one" min:"1"`
	Balance   int64     `json:"balance" doc:"In minor units (cents)" min:"0" max:"1000000000000000"`
	CreatedAt time.Time `json:"created_at"`
}

// accountInput is the body of POST /accounts.
type accountInput struct {
	UserID  *int64 `json:"user_id,omitempty" doc:"The owner, an existing user; omit it for an account without one" min:"1"`
	Balance int64  `json:"balance" doc:"Opening balance in minor units (cents), 0 to 10^15" min:"0" max:"1000000000000000" example:"10000"`
}

// transfer is a transfer as the API shows it.
type transfer struct {
	ID          int64     `json:"id" min:"1"`
	FromAccount int64     `json:"from_account" min:"1"`
	ToAccount   int64     `json:"to_account" min:"1"`
	Amount      int64     `json:"amount" doc:"In minor units (cents)" min:"1"`
	CreatedAt   time.Time `json:"created_at"`
}

// transferInput is the body of POST /transfers and of a batch's transfer.
type transferInput struct {
	FromAccount int64 `json:"from_account" doc:"The account debited" min:"1" example:"1"`
	ToAccount   int64 `json:"to_account" doc:"The account credited; not the one debited" min:"1" example:"2"`
	Amount      int64 `json:"amount" doc:"In minor units (cents), 1 to 10^15" min:"1" max:"1000000000000000" example:"2500"`
}

func (in *transferInput) validate() error {
	var errs []fieldError
	if in.FromAccount < 1 {
		errs = append(errs, fieldError{Field: "from_account", Message: "must be an account id"})
	}
	if in.ToAccount < 1 {
		errs = append(errs, fieldError{Field: "to_account", Message: "must be an account id"})
	}
	if in.Amount < 1 || in.Amount > maxBalance {
		errs = append(errs, fieldError{Field: "amount", Message: fmt.Sprintf("must be from 1 to %d minor units", int64(maxBalance))})
	}
	if in.FromAccount == in.ToAccount && in.FromAccount > 0 {
		errs = append(errs, fieldError{Field: "to_account", Message: "must differ from from_account"})
	}
	if len(errs) > 0 {
		return invalid(errs...)
	}
	return nil
}

func (s *server) accountRoutes(a *api) {
	handleJSON(a, op{Pattern: "POST /accounts", ID: "createAccount", Tag: "accounts", Summary: "Open an account",
		Description: "The opening balance is written to the ledger. An unknown user_id is a 404.",
		Idempotent:  true, Problems: []kind{probValidation, probNotFound}},
		http.StatusCreated, s.createAccount)
	handleJSON(a, op{Pattern: "GET /accounts/{id}", ID: "getAccount", Tag: "accounts", Summary: "Get an account",
		Params: []param{idParam("account")}, Problems: []kind{probNotFound}},
		http.StatusOK, s.getAccount)
	handleJSON(a, op{Pattern: "POST /transfers", ID: "createTransfer", Tag: "accounts", Summary: "Transfer money between accounts",
		Description: "In one transaction: the debit (only if the funds suffice), the credit, the transfer and its two ledger rows. " +
			"Send an Idempotency-Key to make retries safe: a retried transfer moves the money once.",
		Idempotent: true, Problems: []kind{probValidation, probNotFound, probInsufficient, probBalanceLimit}},
		http.StatusCreated, s.createTransfer)
	handleJSON(a, op{Pattern: "POST /batch", ID: "runBatch", Tag: "accounts", Summary: "Run transfers and user creations in one transaction",
		Description: "Each operation runs in its own savepoint inside one transaction: one that fails is rolled back alone and reported, and the others are committed. " +
			"A malformed operation (unknown op, unknown or missing field, wrong type) is a 400 and nothing runs.",
		Idempotent: true, Problems: []kind{probValidation}},
		http.StatusOK, s.runBatch)
}

func (s *server) createAccount(c *call, in *accountInput) (account, error) {
	var errs []fieldError
	if in.Balance < 0 || in.Balance > maxBalance {
		errs = append(errs, fieldError{Field: "balance", Message: fmt.Sprintf("must be from 0 to %d minor units", int64(maxBalance))})
	}
	if in.UserID != nil && *in.UserID < 1 {
		errs = append(errs, fieldError{Field: "user_id", Message: "must be a user id"})
	}
	if len(errs) > 0 {
		return account{}, invalid(errs...)
	}
	var a account
	err := txn.Do(c.ctx(), s.store.db, func(ctx context.Context, _ *sql.Tx) error {
		var err error
		a, err = s.store.insertAccount(ctx, in.UserID, in.Balance)
		if errors.Is(err, errNoSuchUser) {
			return newProblem(probNotFound, "no user has id %d", *in.UserID)
		}
		return err
	})
	return a, err
}

func (s *server) getAccount(c *call, _ *none) (account, error) {
	id, err := c.pathID("id")
	if err != nil {
		return account{}, err
	}
	a, err := s.store.getAccount(c.ctx(), id)
	return a, accountProblem(err)
}

func (s *server) createTransfer(c *call, in *transferInput) (transfer, error) {
	if err := in.validate(); err != nil {
		return transfer{}, err
	}
	return s.doTransfer(c.ctx(), in)
}

// doTransfer runs a valid transfer in a transaction of its own, or in a
// savepoint of the one in ctx.
func (s *server) doTransfer(ctx context.Context, in *transferInput) (transfer, error) {
	var t transfer
	err := txn.Do(ctx, s.store.db, func(ctx context.Context, _ *sql.Tx) error {
		var err error
		t, err = s.store.transfer(ctx, in.FromAccount, in.ToAccount, in.Amount)
		return accountProblem(err)
	})
	return t, err
}

// accountProblem turns the store's account errors into problems.
func accountProblem(err error) error {
	var nf accountNotFoundError
	switch {
	case errors.As(err, &nf):
		return newProblem(probNotFound, "%v", nf)
	case errors.Is(err, errInsufficientFunds):
		return newProblem(probInsufficient, "the source account's balance is smaller than the amount")
	case errors.Is(err, errBalanceLimit):
		return newProblem(probBalanceLimit, "the transfer would take the destination's balance past %d", int64(maxBalance))
	}
	return err
}

// maxBatchOps bounds one POST /batch.
const maxBatchOps = 1000

// batchInput is the body of POST /batch.
type batchInput struct {
	Operations []batchOp `json:"operations" doc:"Run in order, each in its own savepoint" minItems:"1" maxItems:"1000"`
}

// batchOp is one operation of a batch: a transfer or a user creation,
// told apart by op. It is decoded strictly, as its shape demands.
type batchOp struct {
	transfer *transferInput
	user     *userInput
}

// The two shapes of a batch operation, for decoding and for the document.
type (
	transferOp struct {
		Op string `json:"op" enum:"transfer"`
		transferInput
	}
	createUserOp struct {
		Op string `json:"op" enum:"create_user"`
		userInput
	}
)

func (b *batchOp) UnmarshalJSON(data []byte) error {
	var head struct {
		Op string `json:"op"`
	}
	_ = json.Unmarshal(data, &head)
	switch head.Op {
	case "transfer":
		var v transferOp
		if err := decodeStrict(data, &v); err != nil {
			return err
		}
		b.transfer = &v.transferInput
	case "create_user":
		var v createUserOp
		if err := decodeStrict(data, &v); err != nil {
			return err
		}
		b.user = &v.userInput
	default:
		return newProblem(probBadRequest, `each operation's "op" must be "transfer" or "create_user", not %q`, head.Op)
	}
	return nil
}

func (batchOp) openAPISchema(g *schemaGen) *schema {
	t, u := g.of(reflect.TypeFor[transferOp]()), g.of(reflect.TypeFor[createUserOp]())
	return &schema{OneOf: []*schema{t, u}, Discriminator: &discriminator{PropertyName: "op",
		Mapping: map[string]string{"transfer": t.Ref, "create_user": u.Ref}}}
}

// batchResult is the outcome of one operation of a batch.
type batchResult struct {
	Index  int      `json:"index" doc:"The operation's position in operations"`
	Status string   `json:"status" enum:"ok|error"`
	Result any      `json:"result,omitempty" doc:"The transfer or user created, when ok"`
	Error  *problem `json:"error,omitempty" doc:"Why the operation failed; it was rolled back alone"`
}

// batchOutput is the answer of POST /batch.
type batchOutput struct {
	Results []batchResult `json:"results"`
}

func (s *server) runBatch(c *call, in *batchInput) (batchOutput, error) {
	if len(in.Operations) == 0 || len(in.Operations) > maxBatchOps {
		return batchOutput{}, invalid(fieldError{Field: "operations", Message: fmt.Sprintf("must hold 1 to %d operations", maxBatchOps)})
	}
	var out batchOutput
	err := txn.Do(c.ctx(), s.store.db, func(ctx context.Context, _ *sql.Tx) error {
		out.Results = make([]batchResult, len(in.Operations)) // again on a retry
		for i, op := range in.Operations {
			var (
				v   any
				err error
			)
			switch {
			case op.transfer != nil:
				if err = op.transfer.validate(); err == nil {
					v, err = s.doTransfer(ctx, op.transfer)
				}
			case op.user != nil:
				if errs := op.user.normalize(); len(errs) > 0 {
					err = invalid(errs...)
				} else {
					err = txn.Do(ctx, s.store.db, func(ctx context.Context, _ *sql.Tx) error {
						u, err := s.store.insertUser(ctx, *op.user)
						if err != nil {
							return userConflict(err)
						}
						v = u
						return s.invalidateAfterCommit(ctx, userChange{u.ID, u.Version})
					})
				}
			}
			out.Results[i] = batchResult{Index: i, Status: "ok", Result: v}
			var p *problem
			switch {
			case err == nil:
			case errors.As(err, &p):
				out.Results[i] = batchResult{Index: i, Status: "error", Error: p}
			default:
				return err // not the operation's fault: the whole batch fails, or is retried
			}
		}
		return nil
	})
	return out, err
}
