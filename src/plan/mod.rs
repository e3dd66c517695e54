//! The pure planner: diff, cost, rendering.
