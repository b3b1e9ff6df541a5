// mac_fold: runs one fold of a conv job on mac_array (mirrors simulator/stages/mac_array.py, stage "mac_array":
// one (fold of rows) x (fold of columns) step of its fold_model() for dataflow "os").
//
// What it models: the MAC array with its operand feeder and its result port. A conv job is, per group, the
// product (E x K) . (K x N): E output pixels of the job, K = kh*kw*Cg (kernel row u, kernel column v, input
// channel c of the group; c fastest), N output channels of the group in the tile. One fold is output pixels
// [e0, e0 + R) times the group's output channels [n0, n0 + C). The feeder is an im2col address generator: for
// array row i and reduction step k it reads the staged ifmap byte (channel group*Cg + c) at canvas position
// (oy*stride_h + u*dil_h - off_h, ox*stride_w + v*dil_w - off_w) of output pixel e0 + i = (oy, ox) from the
// ifmap SRAM in its activation layout (positions outside the staged tile are the implicit zero padding or
// crop); for column j it reads weight[w_index][group*Mg + n0 + j][c][u][v] from the weight SRAM (OIHW, or
// POIHW with w_index the phase sub-kernel). Row i gets step k at fold cycle k + i, column j at k + j (the
// skew); rows past E and columns past N are fed zeros. The fold is `busy` for exactly T + R + C - 2 cycles
// (T = K): what the cycle model charges. Then the drain: one cycle captures the accumulators into the
// shadow registers, and R cycles write one array row each (C int32, little-endian, at their byte addresses in
// the psum region's activation layout) through the result port; `done` pulses after the last row. The drain
// is not `busy`: with the shadows the array could start the next fold at once (docs/timing.md: outputs drain
// during the gap); cosim's sequencer simply waits for `done`.
module mac_fold #(
    parameter integer R = 8,
    parameter integer C = 8,
    parameter integer AW = 32
) (
    input  wire               clk,
    input  wire               rst_n,
    input  wire               start,
    // staged ifmap region (C_tile, x_h, x_w), int8
    input  wire [AW-1:0]      x_base,
    input  wire [1:0]         x_layout,      // 0 NCHW, 1 NHWC, 2 NC1HWC0
    input  wire [15:0]        x_c0,
    input  wire [15:0]        x_channels,
    input  wire [15:0]        x_h,
    input  wire [15:0]        x_w,
    // the job
    input  wire [15:0]        kh, kw, stride_h, stride_w, dil_h, dil_w,
    input  wire signed [31:0] off_h, off_w,  // where staged pixel (0, 0) sits on the job's canvas
    input  wire [15:0]        out_h, out_w,  // the job's output rows, columns
    input  wire [15:0]        cg,            // input channels per group
    input  wire [15:0]        mg,            // output channels per group in the tile
    input  wire [15:0]        group,         // group index within the tile
    // weight region (OIHW or POIHW), int8
    input  wire [AW-1:0]      w_base,
    input  wire [15:0]        w_m,           // output channels in the region (tile)
    input  wire [15:0]        w_index,       // sub-kernel (POIHW); 0 for OIHW
    // the fold
    input  wire [AW-1:0]      e0,
    input  wire [15:0]        n0,
    // psum region (w_m, out_h, out_w), int32
    input  wire [AW-1:0]      p_base,
    input  wire [1:0]         p_layout,
    input  wire [15:0]        p_c0,
    output reg                busy,
    output reg                done,
    // feeder read ports (asynchronous byte reads)
    output reg  [AW*R-1:0]    a_addr,
    input  wire [8*R-1:0]     a_data,
    output reg  [AW*C-1:0]    b_addr,
    input  wire [8*C-1:0]     b_data,
    // result port: one array row of C int32 per drain cycle
    output reg  [C-1:0]       ps_we,
    output reg  [AW*C-1:0]    ps_addr,
    output wire [32*C-1:0]    ps_data
);
    localparam [1:0] NCHW = 2'd0, NHWC = 2'd1, NC1HWC0 = 2'd2;

    reg  [AW-1:0] t;                            // fold cycle
    wire [AW-1:0] k_len = kh * kw * cg;         // T
    wire [AW-1:0] e_len = out_h * out_w;        // E
    wire [AW-1:0] last = k_len + R + C - 3;     // the cycle of the last MAC

    // ---------------------------------------------------------------- feeder
    // The reduction step of the fold is decoded once, by counters: step k = t is kernel row ku, kernel column kv,
    // channel kc (channel fastest). A skew line of registers delays that decode: stage i holds step t - i, which
    // is what array row i and array column i take this cycle. Each row then forms its ifmap address from its
    // output pixel (fixed for the fold) and the delayed (u, v, c); each column its weight address.
    localparam integer D = (R > C) ? R : C;
    reg  [15:0] ku, kv, kc;                     // decode of step t
    wire        k_valid = busy && t < k_len;
    wire [8*R-1:0] a_feed;
    wire [R-1:0]   first_feed;
    wire [8*C-1:0] b_feed;
    genvar gi;
    generate
        for (gi = 0; gi < D; gi = gi + 1) begin : skew
            reg  [15:0] u, v, c;
            reg         valid, first;
            if (gi == 0) begin : head
                always @* begin
                    u = ku;  v = kv;  c = kc;  valid = k_valid;  first = k_valid && t == 0;
                end
            end else begin : tail
                always @(posedge clk or negedge rst_n) begin
                    if (!rst_n) begin
                        valid <= 1'b0;  first <= 1'b0;  u <= 0;  v <= 0;  c <= 0;
                    end else if (start && !busy && !draining) begin
                        valid <= 1'b0;  first <= 1'b0;
                    end else begin
                        u <= skew[gi - 1].u;  v <= skew[gi - 1].v;  c <= skew[gi - 1].c;
                        valid <= skew[gi - 1].valid;  first <= skew[gi - 1].first;
                    end
                end
            end
        end
        for (gi = 0; gi < R; gi = gi + 1) begin : feed_row
            reg  [AW-1:0]     e, oy, ox, ch;
            reg  signed [AW:0] ry, rx;
            reg               ok;
            reg  [AW-1:0]     addr;
            always @* begin                       // the row's output pixel: fixed for the fold
                e = e0 + gi;
                oy = e / out_w;  ox = e % out_w;
            end
            always @* begin
                ry = $signed({1'b0, oy * stride_h + skew[gi].u * dil_h}) - off_h;
                rx = $signed({1'b0, ox * stride_w + skew[gi].v * dil_w}) - off_w;
                ch = group * cg + skew[gi].c;
                ok = skew[gi].valid && e < e_len && ry >= 0 && rx >= 0 && ry < x_h && rx < x_w;
                if (x_layout == NCHW)      addr = x_base + (ch * x_h + ry) * x_w + rx;
                else if (x_layout == NHWC) addr = x_base + (ry * x_w + rx) * x_channels + ch;
                else addr = x_base + (((ch / x_c0) * x_h + ry) * x_w + rx) * x_c0 + ch % x_c0;
            end
            always @* a_addr[AW*gi +: AW] = addr;
            assign a_feed[8*gi +: 8] = ok ? a_data[8*gi +: 8] : 8'd0;
            assign first_feed[gi] = skew[gi].first;
        end
        for (gi = 0; gi < C; gi = gi + 1) begin : feed_col
            reg  [AW-1:0] m, addr;
            reg           ok;
            always @* begin
                m = group * mg + n0 + gi;
                ok = skew[gi].valid && n0 + gi < mg;
                addr = w_base + (w_index * w_m + m) * k_len + (skew[gi].c * kh + skew[gi].u) * kw + skew[gi].v;
            end
            always @* b_addr[AW*gi +: AW] = addr;
            assign b_feed[8*gi +: 8] = ok ? b_data[8*gi +: 8] : 8'd0;
        end
    endgenerate

    reg           draining;
    reg  [AW-1:0] d;                            // drain cycle: 0 capture, 1..R write row d-1
    mac_array #(.R(R), .C(C)) array (
        .clk(clk), .a_feed(a_feed), .first_feed(first_feed), .b_feed(b_feed),
        .capture(draining && d == 0), .shift(draining && d != 0), .out_row(ps_data)
    );

    // ---------------------------------------------------------------- result port
    integer pj;
    reg [AW-1:0] pe, py, px, pm;
    always @* begin
        pe = e0 + d - 1;
        py = pe / out_w;  px = pe % out_w;
        for (pj = 0; pj < C; pj = pj + 1) begin
            pm = group * mg + n0 + pj;
            ps_we[pj] = draining && d != 0 && pe < e_len && n0 + pj < mg;
            if (p_layout == NCHW)      ps_addr[AW*pj +: AW] = p_base + 4 * ((pm * out_h + py) * out_w + px);
            else if (p_layout == NHWC) ps_addr[AW*pj +: AW] = p_base + 4 * ((py * out_w + px) * w_m + pm);
            else ps_addr[AW*pj +: AW] = p_base + 4 * ((((pm / p_c0) * out_h + py) * out_w + px) * p_c0 + pm % p_c0);
        end
    end

    // ---------------------------------------------------------------- control
    always @(posedge clk or negedge rst_n) begin
        if (!rst_n) begin
            busy <= 1'b0; done <= 1'b0; draining <= 1'b0; t <= 0; d <= 0; ku <= 0; kv <= 0; kc <= 0;
        end else begin
            done <= 1'b0;
            if (busy) begin
                t <= t + 1;
                if (kc + 1 == cg) begin       // step t + 1: next channel, kernel column, kernel row
                    kc <= 0;
                    if (kv + 1 == kw) begin
                        kv <= 0;
                        ku <= ku + 1;
                    end else kv <= kv + 1;
                end else kc <= kc + 1;
                if (t == last) begin
                    busy <= 1'b0;
                    draining <= 1'b1;
                    d <= 0;
                end
            end else if (draining) begin
                d <= d + 1;
                if (d == R) begin
                    draining <= 1'b0;
                    done <= 1'b1;
                end
            end else if (start) begin
                busy <= 1'b1;
                t <= 0; ku <= 0; kv <= 0; kc <= 0;
            end
        end
    end
endmodule
