// Writes held-out Sudoku puzzles from the pinned npm package sudoku-gen (see
// package-lock.json), an independent generator that grades difficulty:
//
//     npm ci --prefix tools/sudoku && node tools/sudoku/puzzles.js 100 1 > tools/sudoku/puzzles.txt
//
// One line per puzzle: "grade puzzle solution", 81 characters each, '.' for a blank.
// sudoku-gen draws from Math.random; it is replaced here by a seeded generator
// (mulberry32) so that the same count and seed give the same file.
'use strict';

const count = Number(process.argv[2] || 100);
const seed = Number(process.argv[3] || 1);
if (!Number.isInteger(count) || count < 1 || !Number.isInteger(seed)) {
  process.stderr.write('usage: node puzzles.js COUNT_PER_GRADE SEED\n');
  process.exit(2);
}

let state = seed >>> 0;
Math.random = function mulberry32() {
  state = (state + 0x6d2b79f5) >>> 0;
  let t = state;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};

const { getSudoku } = require('sudoku-gen');
for (const grade of ['easy', 'medium', 'hard', 'expert']) {
  for (let i = 0; i < count; i++) {
    const s = getSudoku(grade);
    process.stdout.write(`${grade} ${s.puzzle.replace(/-/g, '.')} ${s.solution}\n`);
  }
}
