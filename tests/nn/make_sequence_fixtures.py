#!/usr/bin/python3
"""Writes fixtures/sequence.safetensors: inputs, parameters, outputs and gradients of PyTorch's
recurrent layers, for tests/nn/test_recurrent.cpp.

Run with Debian's python3-torch (apt install python3-torch):  /usr/bin/python3 make_sequence_fixtures.py
The tests only read the generated file, so they never need torch. Values are float64.

Each case "<case>" stores its module's parameters as "<case>.<name>" (PyTorch's names), the
inputs, the outputs, and the gradients of the loss sum(output * w_out) + sum(h_n * w_h)
[+ sum(c_n * w_c)] as "<case>.grad.<name>".
"""
import os

import torch

from fixture_writer import FixtureWriter

torch.manual_seed(2024)
torch.set_default_dtype(torch.float64)
writer = FixtureWriter("make_sequence_fixtures.py")
emit = writer.emit


def recurrent_case(case, module, x, state, lengths=None):
    """Forward, loss and backward of an nn.LSTM/nn.GRU; stores everything under `case`."""
    for name, p in module.named_parameters():
        emit(f"{case}.{name}", p)
    x = x.clone().requires_grad_(True)
    emit(f"{case}.x", x)
    is_lstm = isinstance(module, torch.nn.LSTM)
    if state is not None:
        state = tuple(s.clone().requires_grad_(True) for s in state) if is_lstm else state.clone().requires_grad_(True)
        if is_lstm:
            emit(f"{case}.h0", state[0])
            emit(f"{case}.c0", state[1])
        else:
            emit(f"{case}.h0", state)
    if lengths is not None:
        emit(f"{case}.lengths", torch.tensor(lengths, dtype=torch.float64))
        packed = torch.nn.utils.rnn.pack_padded_sequence(x, torch.tensor(lengths), batch_first=module.batch_first,
                                                         enforce_sorted=False)
        out, final = module(packed, state)
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=module.batch_first, total_length=x.shape[1 if module.batch_first else 0])
    else:
        out, final = module(x, state)
    emit(f"{case}.output", out)
    w_out = torch.randn(out.shape)
    emit(f"{case}.w_out", w_out)
    loss = (out * w_out).sum()
    h_n = final[0] if is_lstm else final
    emit(f"{case}.h_n", h_n)
    w_h = torch.randn(h_n.shape)
    emit(f"{case}.w_h", w_h)
    loss = loss + (h_n * w_h).sum()
    if is_lstm:
        emit(f"{case}.c_n", final[1])
        w_c = torch.randn(final[1].shape)
        emit(f"{case}.w_c", w_c)
        loss = loss + (final[1] * w_c).sum()
    emit(f"{case}.loss", loss)
    loss.backward()
    for name, p in module.named_parameters():
        emit(f"{case}.grad.{name}", p.grad)
    emit(f"{case}.grad.x", x.grad)
    if state is not None:
        if is_lstm:
            emit(f"{case}.grad.h0", state[0].grad)
            emit(f"{case}.grad.c0", state[1].grad)
        else:
            emit(f"{case}.grad.h0", state.grad)


T, N, I, H = 5, 3, 4, 6

# A 2-layer bidirectional LSTM, time-major, with an initial state.
lstm = torch.nn.LSTM(I, H, num_layers=2, bidirectional=True)
recurrent_case("lstm", lstm, torch.randn(T, N, I), (torch.randn(4, N, H), torch.randn(4, N, H)))

# A 2-layer bidirectional GRU, batch-first, with an initial state.
gru = torch.nn.GRU(I, H, num_layers=2, bidirectional=True, batch_first=True)
recurrent_case("gru", gru, torch.randn(N, T, I), torch.randn(4, N, H))

# Variable lengths (packed sequences), one layer each way, zero initial state.
lstm_packed = torch.nn.LSTM(I, H, bidirectional=True)
recurrent_case("lstm_packed", lstm_packed, torch.randn(T, N, I), None, lengths=[5, 2, 3])
gru_packed = torch.nn.GRU(I, H)
recurrent_case("gru_packed", gru_packed, torch.randn(T, N, I), None, lengths=[1, 5, 4])

# The cells: one step, loss sum(h' * w_h) (+ sum(c' * w_c)).
for case, cell in (("lstm_cell", torch.nn.LSTMCell(I, H)), ("gru_cell", torch.nn.GRUCell(I, H))):
    for name, p in cell.named_parameters():
        emit(f"{case}.{name}", p)
    x = torch.randn(N, I, requires_grad=True)
    h = torch.randn(N, H, requires_grad=True)
    emit(f"{case}.x", x)
    emit(f"{case}.h0", h)
    w_h = torch.randn(N, H)
    emit(f"{case}.w_h", w_h)
    if case == "lstm_cell":
        c = torch.randn(N, H, requires_grad=True)
        emit(f"{case}.c0", c)
        h1, c1 = cell(x, (h, c))
        w_c = torch.randn(N, H)
        emit(f"{case}.w_c", w_c)
        emit(f"{case}.c1", c1)
        loss = (h1 * w_h).sum() + (c1 * w_c).sum()
    else:
        h1 = cell(x, h)
        loss = (h1 * w_h).sum()
    emit(f"{case}.h1", h1)
    loss.backward()
    for name, p in cell.named_parameters():
        emit(f"{case}.grad.{name}", p.grad)
    emit(f"{case}.grad.x", x.grad)
    emit(f"{case}.grad.h0", h.grad)
    if case == "lstm_cell":
        emit(f"{case}.grad.c0", c.grad)

here = os.path.dirname(os.path.abspath(__file__))
os.makedirs(os.path.join(here, "fixtures"), exist_ok=True)
writer.write(os.path.join(here, "fixtures", "sequence.safetensors"))
