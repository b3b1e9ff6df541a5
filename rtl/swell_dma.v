// swell_dma: the swelling DMA of convsim's engine (mirrors simulator/stages/swell.py, stage "swell").
//
// What it models: a streaming unit that reads the compact int8 ifmap tile (C, H, W) from the ifmap SRAM, in
// convsim's activation layout (NCHW, NHWC or NC1HWC0 with channel blocks of c0), and writes the swelled tile
// (C, OH, OW) into the same SRAM: input pixel (iy, ix) lands at (off_h + iy*stride_h, off_w + ix*stride_w), so
// stride-1 zeros are inserted between pixels, a positive offset pads the top/left border, a negative one crops,
// and the far border (d(k-1)-p, plus output_padding) is whatever OH/OW leave below/right of the last pixel.
// Every byte of the swelled region is written: pixels from the input, every other pixel the `fill` register
// (0 today; ready for an input zero point), and the zero tail channels of the last NC1HWC0 block as 0.
//
// Micro-architecture (docs/rtl.md): after `setup_cycles` cycles of descriptor set-up the unit streams. Each
// cycle its read port reads the next BPC bytes of the compact region, in address order, into a circular
// staging buffer (STAGE_BYTES), and its write port writes the next BPC bytes of the swelled region, in address
// order. Each write lane decodes its destination byte to (channel, row, column), maps it back to the source
// byte (if any) and takes it from the staging buffer, or straight from this cycle's read data (bypass). The
// map is monotonic in both address orders, so a byte the writer used is never needed again: the reader may
// overwrite its slot. The writer stalls a cycle if a byte it needs has not been read yet; the reader stalls if
// its next beat would overwrite a byte still needed. Without stalls the unit is busy for exactly
//     setup_cycles + ceil(max(src_bytes, dst_bytes) / BPC)
// cycles: convsim's swell_cycles(). (A left crop of at least BPC bytes makes the first write wait for the
// read; docs/rtl.md says when, and cosim reports the difference.)
//
// Interface: descriptor inputs are sampled on `start` and must stay stable while `busy`. The read port is an
// asynchronous (same-cycle) byte-addressed read of BPC bytes; the write port writes BPC bytes with byte enables
// at the clock edge. `busy` is high for exactly the cycles the unit works; `done` pulses one cycle after.
// Per-lane address decode uses `/` and `%` by descriptor values for clarity (a production unit steps
// counters); it is synthesizable Verilog-2005.
module swell_dma #(
    parameter integer BPC = 64,          // bytes per cycle, each port (hardware.swell_dma.bytes_per_cycle)
    parameter integer AW = 32,           // byte address width
    parameter integer STAGE_BYTES = 8192 // staging buffer, a power of two, >= 4*BPC + the widest row crop
) (
    input  wire              clk,
    input  wire              rst_n,
    input  wire              start,
    input  wire [AW-1:0]     src_base,     // compact ifmap region: byte address, size (with NC1HWC0 padding)
    input  wire [AW-1:0]     src_bytes,
    input  wire [AW-1:0]     dst_base,     // swelled region
    input  wire [AW-1:0]     dst_bytes,
    input  wire [1:0]        layout,       // 0 NCHW, 1 NHWC, 2 NC1HWC0
    input  wire [15:0]       c0,           // NC1HWC0 channel block
    input  wire [15:0]       channels,     // C of the tile
    input  wire [15:0]       in_h,         // compact rows, columns
    input  wire [15:0]       in_w,
    input  wire [15:0]       out_h,        // swelled rows, columns
    input  wire [15:0]       out_w,
    input  wire [15:0]       stride_h,
    input  wire [15:0]       stride_w,
    input  wire signed [31:0] off_h,       // where input pixel (0, 0) lands (negative: cropped)
    input  wire signed [31:0] off_w,
    input  wire [7:0]        fill,         // value of inserted and border pixels
    input  wire [31:0]       setup_cycles,
    output reg               busy,
    output reg               done,
    output wire              rd_en,
    output wire [AW-1:0]     rd_addr,
    input  wire [8*BPC-1:0]  rd_data,
    output wire              wr_en,
    output wire [AW-1:0]     wr_addr,
    output wire [8*BPC-1:0]  wr_data,
    output wire [BPC-1:0]    wr_be
);
    localparam [1:0] NCHW = 2'd0, NHWC = 2'd1, NC1HWC0 = 2'd2;

    reg  [7:0]    stage [0:STAGE_BYTES-1];
    reg           streaming;   // past the set-up cycles
    reg  [31:0]   setup_left;
    reg  [AW-1:0] rc;          // source bytes read so far
    reg  [AW-1:0] wc;          // destination bytes written so far
    reg  [AW-1:0] consumed;    // every source byte below this has been used (monotonic map)

    // ---------------------------------------------------------------- read side
    wire [AW-1:0] rd_left = src_bytes - rc;
    wire [AW-1:0] rd_count = (rd_left < BPC) ? rd_left : BPC;
    assign rd_en   = busy && streaming && (rc < src_bytes) && (rc + BPC <= consumed + STAGE_BYTES);
    assign rd_addr = src_base + rc;
    wire [AW-1:0] rd_next = rc + (rd_en ? rd_count : 0);   // bytes available to the writer this cycle

    // ---------------------------------------------------------------- write side: per-lane source decode
    // lane l writes destination byte wc + l; each lane is its own block of logic (no wide shared bus)
    wire [BPC-1:0]    lane_ready;      // the lane's byte is available this cycle (or it needs none)
    wire [BPC-1:0]    lane_mapped;     // the lane's byte comes from the input
    wire [AW*BPC-1:0] lane_src;        // ... from this source byte
    genvar gl;
    generate
        for (gl = 0; gl < BPC; gl = gl + 1) begin : lane
            reg  [AW-1:0]     j, c, cc, c1, x, y, q, iy, ix, src;
            reg  signed [AW:0] dy, dx;
            reg               active, mapped, pad;
            wire [7:0]        staged = stage[src % STAGE_BYTES];
            always @* begin
                j = wc + gl;
                // destination byte j -> channel c, row y, column x (pad: a zero tail channel of NC1HWC0)
                pad = 1'b0;
                cc = 0; c1 = 0;
                if (layout == NCHW) begin
                    x = j % out_w;  q = j / out_w;  y = q % out_h;  c = q / out_h;
                end else if (layout == NHWC) begin
                    c = j % channels;  q = j / channels;  x = q % out_w;  y = q / out_w;
                end else begin
                    cc = j % c0;  q = j / c0;  x = q % out_w;  q = q / out_w;  y = q % out_h;  c1 = q / out_h;
                    c = c1 * c0 + cc;
                    pad = (c >= channels);
                end
                dy = $signed({1'b0, y}) - off_h;
                dx = $signed({1'b0, x}) - off_w;
                active = j < dst_bytes;
                mapped = active && !pad && dy >= 0 && dx >= 0 && (dy % stride_h) == 0 && (dx % stride_w) == 0
                         && (dy / stride_h) < in_h && (dx / stride_w) < in_w;
                iy = dy / stride_h;
                ix = dx / stride_w;
                if (layout == NCHW)      src = (c * in_h + iy) * in_w + ix;
                else if (layout == NHWC) src = (iy * in_w + ix) * channels + c;
                else                     src = ((c1 * in_h + iy) * in_w + ix) * c0 + cc;
                if (!mapped) src = 0;
            end
            assign lane_mapped[gl] = mapped;
            assign lane_ready[gl] = !mapped || src < rd_next;
            assign lane_src[AW*gl +: AW] = src;
            reg  [7:0]        value;
            always @* begin
                if (!mapped)        value = pad ? 8'd0 : fill;
                else if (src >= rc) value = rd_data[8*(src - rc) +: 8];   // bypass: read this cycle
                else                value = staged;
            end
            assign wr_be[gl] = active;
            assign wr_data[8*gl +: 8] = value;
        end
    endgenerate
    wire all_ready = &lane_ready;
    // one past the highest source byte this beat uses: the map is monotonic, so the last mapped lane's
    reg  [AW-1:0] max_src;
    integer l;
    always @* begin
        max_src = consumed;
        for (l = 0; l < BPC; l = l + 1)
            if (lane_mapped[l]) max_src = lane_src[AW*l +: AW] + 1;
    end
    assign wr_en   = busy && streaming && (wc < dst_bytes) && all_ready;
    assign wr_addr = dst_base + wc;

    // ---------------------------------------------------------------- control
    wire [AW-1:0] wc_next = wc + (wr_en ? BPC : 0);
    integer k;
    always @(posedge clk or negedge rst_n) begin
        if (!rst_n) begin
            busy <= 1'b0; done <= 1'b0; streaming <= 1'b0;
            setup_left <= 0; rc <= 0; wc <= 0; consumed <= 0;
        end else begin
            done <= 1'b0;
            if (!busy) begin
                if (start) begin
                    busy <= 1'b1;
                    streaming <= (setup_cycles == 0);
                    setup_left <= setup_cycles;
                    rc <= 0; wc <= 0; consumed <= 0;
                end
            end else if (!streaming) begin
                // set-up: `setup_cycles` busy cycles before the first beat
                if (setup_left == 1) streaming <= 1'b1;
                setup_left <= setup_left - 1;
            end else begin
                if (rd_en) begin
                    for (k = 0; k < BPC; k = k + 1)
                        if (k < rd_count) stage[(rc + k) % STAGE_BYTES] <= rd_data[8*k +: 8];
                    rc <= rd_next;
                end
                if (wr_en) begin
                    wc <= wc_next;
                    consumed <= max_src;
                end
                if (rd_next >= src_bytes && wc_next >= dst_bytes) begin
                    busy <= 1'b0;
                    streaming <= 1'b0;
                    done <= 1'b1;
                end
            end
        end
    end
endmodule
