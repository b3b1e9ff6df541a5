// cosim_top: the harness convsim cosim runs under Icarus Verilog (through cocotb). Not a hardware block.
//
// It holds the engine's three SRAM buffers as word memories exactly as docs/dumps.md tells a testbench to
// declare them (reg [8*WB-1:0] mem [0:DEPTH-1]; byte a is mem[a / WB][8*(a % WB) +: 8]), loads them with
// $readmemh from convsim's per-stage dump files (the file's @ line places the region at its own address),
// connects them to the two units under test (swell_dma, mac_fold) through byte-addressed ports, counts each
// unit's busy cycles, and writes a region back out with $writememh for the comparison. The cocotb test
// (simulator/cosim/tb.py) drives the clock, the reset, the load/dump strobes and the descriptors.
// +wave=FILE.vcd dumps every signal of this module and below (not the memories) as a VCD.
module cosim_top #(
    parameter integer BPC = 64,            // swell_dma bytes per cycle
    parameter integer STAGE_BYTES = 8192,
    parameter integer R = 8,               // MAC array rows, columns
    parameter integer C = 8,
    parameter integer I_WB = 16,           // ifmap buffer: bank word bytes, words
    parameter integer I_DEPTH = 32768,
    parameter integer W_WB = 16,
    parameter integer W_DEPTH = 32768,
    parameter integer P_WB = 16,
    parameter integer P_DEPTH = 32768
) (
    input  wire clk,
    input  wire rst_n,
    // memory files: a path as an ASCII string, and strobes
    input  wire [8*1024-1:0] file_name,
    input  wire [1:0]        mem_sel,     // 0 ifmap, 1 weight, 2 psum
    input  wire              load_stb,    // $readmemh(file_name) into the selected memory
    input  wire              dump_stb,    // $writememh(file_name) of words [dump_lo, dump_hi]
    input  wire              clear_stb,   // zero words [dump_lo, dump_hi] of the selected memory
    input  wire [31:0]       dump_lo,
    input  wire [31:0]       dump_hi,
    input  wire              clear_counters,
    output reg  [63:0]       swell_cycles,
    output reg  [63:0]       mac_cycles,
    // swell_dma descriptor
    input  wire              swell_start,
    input  wire [31:0]       sw_src_base, sw_src_bytes, sw_dst_base, sw_dst_bytes,
    input  wire [1:0]        sw_layout,
    input  wire [15:0]       sw_c0, sw_channels, sw_in_h, sw_in_w, sw_out_h, sw_out_w, sw_stride_h, sw_stride_w,
    input  wire signed [31:0] sw_off_h, sw_off_w,
    input  wire [7:0]        sw_fill,
    input  wire [31:0]       sw_setup_cycles,
    output wire              swell_busy,
    output wire              swell_done,
    // mac_fold descriptor
    input  wire              mac_start,
    input  wire [31:0]       mf_x_base,
    input  wire [1:0]        mf_x_layout,
    input  wire [15:0]       mf_x_c0, mf_x_channels, mf_x_h, mf_x_w,
    input  wire [15:0]       mf_kh, mf_kw, mf_stride_h, mf_stride_w, mf_dil_h, mf_dil_w,
    input  wire signed [31:0] mf_off_h, mf_off_w,
    input  wire [15:0]       mf_out_h, mf_out_w, mf_cg, mf_mg, mf_group,
    input  wire [31:0]       mf_w_base,
    input  wire [15:0]       mf_w_m, mf_w_index,
    input  wire [31:0]       mf_e0,
    input  wire [15:0]       mf_n0,
    input  wire [31:0]       mf_p_base,
    input  wire [1:0]        mf_p_layout,
    input  wire [15:0]       mf_p_c0,
    output wire              mac_busy,
    output wire              mac_done
);
    reg [8*I_WB-1:0] ifmap_mem  [0:I_DEPTH-1];
    reg [8*W_WB-1:0] weight_mem [0:W_DEPTH-1];
    reg [8*P_WB-1:0] psum_mem   [0:P_DEPTH-1];

    // ------------------------------------------------------------------ loading and dumping
    integer a;
    always @(posedge load_stb) begin
        case (mem_sel)
            2'd0: $readmemh(file_name, ifmap_mem);
            2'd1: $readmemh(file_name, weight_mem);
            default: $readmemh(file_name, psum_mem);
        endcase
    end
    always @(posedge dump_stb) begin
        case (mem_sel)
            2'd0: $writememh(file_name, ifmap_mem, dump_lo, dump_hi);
            2'd1: $writememh(file_name, weight_mem, dump_lo, dump_hi);
            default: $writememh(file_name, psum_mem, dump_lo, dump_hi);
        endcase
    end
    always @(posedge clear_stb) begin
        for (a = dump_lo; a <= dump_hi; a = a + 1) begin
            case (mem_sel)
                2'd0: ifmap_mem[a] = 0;
                2'd1: weight_mem[a] = 0;
                default: psum_mem[a] = 0;
            endcase
        end
    end
    reg [8*1024-1:0] wave_file;
    initial begin
        if ($value$plusargs("wave=%s", wave_file)) begin
            $dumpfile(wave_file);
            $dumpvars(0, cosim_top);
        end
    end

    // ------------------------------------------------------------------ busy-cycle counters
    always @(posedge clk) begin
        if (!rst_n || clear_counters) begin
            swell_cycles <= 0;
            mac_cycles <= 0;
        end else begin
            if (swell_busy) swell_cycles <= swell_cycles + 1;
            if (mac_busy) mac_cycles <= mac_cycles + 1;
        end
    end

    // ------------------------------------------------------------------ swell_dma on the ifmap buffer
    wire              sw_rd_en, sw_wr_en;
    wire [31:0]       sw_rd_addr, sw_wr_addr;
    wire [8*BPC-1:0]  sw_rd_data;
    wire [8*BPC-1:0]  sw_wr_data;
    wire [BPC-1:0]    sw_wr_be;
    // byte-addressed read ports: one continuous read per byte lane (a memory read in an @* block would make
    // the simulator watch every word)
    genvar gl;
    generate
        for (gl = 0; gl < BPC; gl = gl + 1) begin : sw_rd
            wire [31:0] a = sw_rd_addr + gl;
            wire [8*I_WB-1:0] word = ifmap_mem[a / I_WB];
            assign sw_rd_data[8*gl +: 8] = word[8*(a % I_WB) +: 8];
        end
    endgenerate
    integer wl;
    always @(posedge clk) begin
        if (sw_wr_en)
            for (wl = 0; wl < BPC; wl = wl + 1)
                if (sw_wr_be[wl])
                    ifmap_mem[(sw_wr_addr + wl) / I_WB][8*((sw_wr_addr + wl) % I_WB) +: 8] <= sw_wr_data[8*wl +: 8];
    end
    swell_dma #(.BPC(BPC), .STAGE_BYTES(STAGE_BYTES)) swell (
        .clk(clk), .rst_n(rst_n), .start(swell_start),
        .src_base(sw_src_base), .src_bytes(sw_src_bytes), .dst_base(sw_dst_base), .dst_bytes(sw_dst_bytes),
        .layout(sw_layout), .c0(sw_c0), .channels(sw_channels), .in_h(sw_in_h), .in_w(sw_in_w),
        .out_h(sw_out_h), .out_w(sw_out_w), .stride_h(sw_stride_h), .stride_w(sw_stride_w),
        .off_h(sw_off_h), .off_w(sw_off_w), .fill(sw_fill), .setup_cycles(sw_setup_cycles),
        .busy(swell_busy), .done(swell_done),
        .rd_en(sw_rd_en), .rd_addr(sw_rd_addr), .rd_data(sw_rd_data),
        .wr_en(sw_wr_en), .wr_addr(sw_wr_addr), .wr_data(sw_wr_data), .wr_be(sw_wr_be)
    );

    // ------------------------------------------------------------------ mac_fold on the three buffers
    wire [32*R-1:0]   mf_a_addr;
    wire [8*R-1:0]    mf_a_data;
    wire [32*C-1:0]   mf_b_addr;
    wire [8*C-1:0]    mf_b_data;
    wire [C-1:0]      mf_ps_we;
    wire [32*C-1:0]   mf_ps_addr;
    wire [32*C-1:0]   mf_ps_data;
    integer pn, bb;
    generate
        for (gl = 0; gl < R; gl = gl + 1) begin : mf_a_rd
            wire [31:0] a = mf_a_addr[32*gl +: 32];
            wire [8*I_WB-1:0] word = ifmap_mem[a / I_WB];
            assign mf_a_data[8*gl +: 8] = word[8*(a % I_WB) +: 8];
        end
        for (gl = 0; gl < C; gl = gl + 1) begin : mf_b_rd
            wire [31:0] a = mf_b_addr[32*gl +: 32];
            wire [8*W_WB-1:0] word = weight_mem[a / W_WB];
            assign mf_b_data[8*gl +: 8] = word[8*(a % W_WB) +: 8];
        end
    endgenerate
    reg [31:0] pa;
    always @(posedge clk) begin
        for (pn = 0; pn < C; pn = pn + 1) begin
            if (mf_ps_we[pn]) begin
                for (bb = 0; bb < 4; bb = bb + 1) begin
                    pa = mf_ps_addr[32*pn +: 32] + bb;
                    psum_mem[pa / P_WB][8*(pa % P_WB) +: 8] <= mf_ps_data[32*pn + 8*bb +: 8];
                end
            end
        end
    end
    mac_fold #(.R(R), .C(C)) mac (
        .clk(clk), .rst_n(rst_n), .start(mac_start),
        .x_base(mf_x_base), .x_layout(mf_x_layout), .x_c0(mf_x_c0), .x_channels(mf_x_channels),
        .x_h(mf_x_h), .x_w(mf_x_w),
        .kh(mf_kh), .kw(mf_kw), .stride_h(mf_stride_h), .stride_w(mf_stride_w), .dil_h(mf_dil_h), .dil_w(mf_dil_w),
        .off_h(mf_off_h), .off_w(mf_off_w), .out_h(mf_out_h), .out_w(mf_out_w),
        .cg(mf_cg), .mg(mf_mg), .group(mf_group),
        .w_base(mf_w_base), .w_m(mf_w_m), .w_index(mf_w_index),
        .e0(mf_e0), .n0(mf_n0), .p_base(mf_p_base), .p_layout(mf_p_layout), .p_c0(mf_p_c0),
        .busy(mac_busy), .done(mac_done),
        .a_addr(mf_a_addr), .a_data(mf_a_data), .b_addr(mf_b_addr), .b_data(mf_b_data),
        .ps_we(mf_ps_we), .ps_addr(mf_ps_addr), .ps_data(mf_ps_data)
    );
endmodule
