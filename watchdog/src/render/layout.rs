//! Widgets placed left to right on a dashboard's grid, wrapping to a new row when the next one
//! does not fit: CloudWatch's 24 columns counted from 0, New Relic's 12 counted from 1. And
//! time spans in the largest whole unit both dashboards' time ranges are written in.

/// A span in its largest whole unit; minutes round up.
pub enum Whole {
    Days(u64),
    Hours(u64),
    Minutes(u64),
}

impl Whole {
    pub fn of(secs: u64) -> Whole {
        if secs.is_multiple_of(86_400) {
            Whole::Days(secs / 86_400)
        } else if secs.is_multiple_of(3600) {
            Whole::Hours(secs / 3600)
        } else {
            Whole::Minutes(secs.div_ceil(60))
        }
    }
}

pub struct Layout {
    columns: u32,
    /// The first column's and first row's number.
    origin: u32,
    column: u32,
    row: u32,
    row_height: u32,
}

impl Layout {
    pub fn new(columns: u32, origin: u32) -> Layout {
        Layout {
            columns,
            origin,
            column: origin,
            row: origin,
            row_height: 0,
        }
    }

    /// Where a widget of this size goes: (column, row).
    pub fn place(&mut self, width: u32, height: u32) -> (u32, u32) {
        if self.column + width > self.columns + self.origin {
            self.new_row();
        }
        let at = (self.column, self.row);
        self.column += width;
        self.row_height = self.row_height.max(height);
        at
    }

    /// The next widget starts a row (unless the current row is still empty).
    pub fn new_row(&mut self) {
        if self.column > self.origin {
            self.row += self.row_height;
            self.column = self.origin;
            self.row_height = 0;
        }
    }
}
