// A stand-in for a user's own swelling DMA (tests/test_cosim.py, docs/rtl.md "Your own RTL"): the ports of
// rtl/swell_dma.v, a different implementation. It writes one destination byte per cycle, reading its source
// byte (if any) through lane 0 of the read port, so it takes setup_cycles + dst_bytes cycles: the data must match
// convsim's dump, the cycles will not match the model's bytes_per_cycle.
module swell_dma #(
    parameter integer BPC = 64,
    parameter integer AW = 32,
    parameter integer STAGE_BYTES = 8192
) (
    input  wire clk, input wire rst_n, input wire start,
    input  wire [AW-1:0] src_base, src_bytes, dst_base, dst_bytes,
    input  wire [1:0] layout,
    input  wire [15:0] c0, channels, in_h, in_w, out_h, out_w, stride_h, stride_w,
    input  wire signed [31:0] off_h, off_w,
    input  wire [7:0] fill,
    input  wire [31:0] setup_cycles,
    output reg busy, output reg done,
    output wire rd_en, output wire [AW-1:0] rd_addr, input wire [8*BPC-1:0] rd_data,
    output wire wr_en, output wire [AW-1:0] wr_addr, output wire [8*BPC-1:0] wr_data, output wire [BPC-1:0] wr_be
);
    reg [AW-1:0] j;
    reg [31:0] wait_left;
    // NHWC only, for brevity: byte j of the swelled map is channel j % C of pixel j / C
    wire [AW-1:0] pixel = j / channels, c = j % channels;
    wire [AW-1:0] y = pixel / out_w, x = pixel % out_w;
    wire signed [AW:0] dy = $signed({1'b0, y}) - off_h, dx = $signed({1'b0, x}) - off_w;
    wire hit = dy >= 0 && dx >= 0 && dy % stride_h == 0 && dx % stride_w == 0 && dy / stride_h < in_h
               && dx / stride_w < in_w;
    wire [AW-1:0] src = ((dy / stride_h) * in_w + dx / stride_w) * channels + c;
    wire working = busy && wait_left == 0;
    assign rd_en = working && hit;
    assign rd_addr = src_base + src;
    assign wr_en = working;
    assign wr_addr = dst_base + j;
    assign wr_data = {{8*(BPC-1){1'b0}}, hit ? rd_data[7:0] : fill};
    assign wr_be = {{(BPC-1){1'b0}}, 1'b1};
    always @(posedge clk or negedge rst_n) begin
        if (!rst_n) begin
            busy <= 0; done <= 0; j <= 0; wait_left <= 0;
        end else begin
            done <= 0;
            if (!busy && start) begin
                busy <= 1; j <= 0; wait_left <= setup_cycles;
            end else if (busy && wait_left != 0) begin
                wait_left <= wait_left - 1;
            end else if (busy) begin
                j <= j + 1;
                if (j + 1 == dst_bytes) begin
                    busy <= 0; done <= 1;
                end
            end
        end
    end
endmodule
