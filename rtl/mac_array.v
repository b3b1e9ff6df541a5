// mac_array: an R x C output-stationary systolic array of int8 x int8 -> int32 PEs
// (mirrors the compute of simulator/stages/mac_array.py, stage "mac_array"; the fold timing of its fold_model()
// for dataflow "os").
//
// What it models: PE (i, j) holds the int32 accumulator of output pixel i and output channel j of one fold.
// Ifmap operands enter at the left edge, one per array row and cycle, and move one PE right per cycle; weight
// operands enter at the top edge, one per array column and cycle, and move one PE down per cycle. The feeder
// skews them (row i's operand for reduction step k enters at fold cycle k + i, column j's at k + j), so
// operand pair k meets in PE (i, j) at fold cycle k + i + j. A `first` bit travels with the ifmap operand and
// restarts the accumulator at k = 0, so consecutive folds need no clear cycle. Operands outside the fold are
// fed as zeros. Products are signed 8 x 8 bits, accumulated in 32 bits (two's complement wrap: convsim's
// `error` policy guarantees no overflow happens in a layer it accepts; `saturate` is not modelled here).
// The last PE, (R-1, C-1), does its last MAC at fold cycle T-1 + R-1 + C-1: a fold takes T + R + C - 2 cycles,
// as docs/timing.md section 1.4 says. Results leave through a shadow register per PE: `capture` copies every
// accumulator into its shadow (the array is then free for the next fold), `shift` moves the shadows up one
// row, and `out_row` is row 0's shadows, so R shifts drain the fold, one row of C int32 per cycle.
// Neighbour links are local nets of each generate block (not slices of one wide bus), which keeps the event
// count per cycle linear in R*C under an event-driven simulator.
module mac_pe (
    input  wire               clk,
    input  wire signed [7:0]  a_in,
    input  wire               first_in,
    input  wire signed [7:0]  b_in,
    input  wire               capture,
    input  wire               shift,
    input  wire signed [31:0] shadow_in,   // the shadow of the PE below (0 for the last row)
    output reg  signed [7:0]  a_out,
    output reg                first_out,
    output reg  signed [7:0]  b_out,
    output reg  signed [31:0] acc,
    output reg  signed [31:0] shadow
);
    always @(posedge clk) begin
        a_out <= a_in;
        first_out <= first_in;
        b_out <= b_in;
        acc <= (first_in ? 32'sd0 : acc) + a_in * b_in;
        if (capture) shadow <= acc;
        else if (shift) shadow <= shadow_in;
    end
endmodule

module mac_array #(
    parameter integer R = 8,   // array rows: output pixels of a fold (hardware.mac_array.rows)
    parameter integer C = 8    // array columns: output channels of a fold (hardware.mac_array.cols)
) (
    input  wire              clk,
    input  wire [8*R-1:0]    a_feed,      // left edge: row i's operand in bits [8i +: 8]
    input  wire [R-1:0]      first_feed,  // row i's operand is reduction step 0
    input  wire [8*C-1:0]    b_feed,      // top edge: column j's operand in bits [8j +: 8]
    input  wire              capture,     // copy every accumulator into its shadow register
    input  wire              shift,       // shadows move up one row
    output wire [32*C-1:0]   out_row      // row 0's shadows: column j in bits [32j +: 32]
);
    genvar i, j;
    generate
        for (i = 0; i < R; i = i + 1) begin : row
            for (j = 0; j < C; j = j + 1) begin : col
                wire [7:0]  a_o, b_o;
                wire        f_o;
                wire [31:0] acc, shadow;
                wire [7:0]  a_i, b_i;
                wire        f_i;
                wire [31:0] below;
                if (j == 0) begin : left
                    assign a_i = a_feed[8*i +: 8];
                    assign f_i = first_feed[i];
                end else begin : inner_h
                    assign a_i = row[i].col[j - 1].a_o;
                    assign f_i = row[i].col[j - 1].f_o;
                end
                if (i == 0) begin : top
                    assign b_i = b_feed[8*j +: 8];
                    assign out_row[32*j +: 32] = shadow;
                end else begin : inner_v
                    assign b_i = row[i - 1].col[j].b_o;
                end
                if (i == R - 1) begin : bottom
                    assign below = 32'd0;
                end else begin : inner_s
                    assign below = row[i + 1].col[j].shadow;
                end
                mac_pe pe (
                    .clk(clk), .a_in(a_i), .first_in(f_i), .b_in(b_i), .capture(capture), .shift(shift),
                    .shadow_in(below), .a_out(a_o), .first_out(f_o), .b_out(b_o), .acc(acc), .shadow(shadow)
                );
            end
        end
    endgenerate
endmodule
