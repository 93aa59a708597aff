// Data: datasets, the DataLoader, batch transforms and the IDX and CSV readers.
#pragma once

#include "tessera/data/csv.hpp"
#include "tessera/data/dataset.hpp"
#include "tessera/data/idx.hpp"
#include "tessera/data/loader.hpp"
#include "tessera/data/transforms.hpp"
