import Testing

@testable import Linux

/// The machine code a batch of remote system calls runs as (it is exercised for real by
/// every dump and restore; this pins the encoding).
struct SyscallBatchTests {
  @Test func encodesArgumentsResultsAndTheClosingBreakpoint() {
    var batch = SyscallBatch()
    let open = batch.add(.open(0x1000, 0))
    batch.add(.close(.result(open)))
    let code = batch.code(results: 0x7000)
    // Unused argument registers are zeroed (xor), so nothing leaks from the call before.
    let zeroRest: [UInt8] = [0x31, 0xd2, 0x45, 0x31, 0xd2, 0x45, 0x31, 0xc0, 0x45, 0x31, 0xc9]  // rdx, r10, r8, r9
    let expected: [UInt8] =
      [0x48, 0xbf] + le(0x1000) + [0x31, 0xf6] + zeroRest  // rdi = 0x1000, rsi = 0
      + [0x48, 0xb8] + le(2) + [0x0f, 0x05] + [0x48, 0xa3] + le(0x7000)  // rax = 2; syscall; [0x7000] = rax
      + [0x48, 0xa1] + le(0x7000) + [0x48, 0x89, 0xc7]  // rax = [0x7000]; rdi = rax
      + [0x31, 0xf6] + zeroRest
      + [0x48, 0xb8] + le(3) + [0x0f, 0x05] + [0x48, 0xa3] + le(0x7008)
      + [0xcc]
    #expect(code == expected)
    #expect(code.count <= SyscallBatch.maximumCodeSize(calls: 2))
  }

  @Test func encodesI386CallsThroughInt80() {
    var batch = SyscallBatch()
    batch.addI386(174, arguments: [.value(10), .value(0x2000), .value(0), .value(8)])  // rt_sigaction
    let code = batch.code(results: 0x7000)
    let expected: [UInt8] =
      [0x48, 0xbb] + le(10) + [0x48, 0xb9] + le(0x2000) + [0x31, 0xd2] + [0x48, 0xbe] + le(8)  // ebx ecx edx esi
      + [0x31, 0xff, 0x31, 0xed]  // edi, ebp zeroed
      + [0x48, 0xb8] + le(174) + [0xcd, 0x80] + [0x48, 0xa3] + le(0x7000) + [0xcc]  // int $0x80
    #expect(code == expected)
    #expect(code.count <= SyscallBatch.maximumCodeSize(calls: 1))
  }

  func le(_ value: UInt64) -> [UInt8] { withUnsafeBytes(of: value.littleEndian) { Array($0) } }
}
